"""End to end: GPT-NeoX's use_parallel_residual, realised in both settings.

GPT-NeoX is parallel by default, and its parallel block still norms the MLP input with its
own `post_attention_layernorm` (StableLM's parallel block shares the attention's norm). The
plan takes `parallel_residual_switch` for the analysed parallel placement (the rule covers
it), so the package reads the flag instead of refusing `False`; both settings verify. Built
with a shared norm instead, the parallel setting fails.
"""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.transforms import parallel_residual
from codegen.verify.cases import default_cases
from codegen.verify.run import verify_case

TYPE = "gpt_neox"


def _verified(tmp_path, label: str) -> bool:
    target = load_target(TYPE)
    plan = make_plan(target)
    rules = [s.rule for s in plan.steps]
    assert "parallel_residual_switch" in rules and "norm_placement" not in rules
    scaffold_into(
        tmp_path / "models",
        plan.reference,
        "gen_neox",
        [TYPE],
        plan.steps,
        features=target.features,
    )
    spec = load_spec("gen_neox", tmp_path / "models")
    case = next(c for c in default_cases(spec) if c.label == label)
    results = verify_case(spec, case, ["fp32"], gradients=False, export=False)
    return bool(results) and all(r.passed and not r.refused for r in results)


@pytest.mark.parametrize("label", [TYPE, f"{TYPE}+use_parallel_residual=False"])
def test_both_settings_verify(tmp_path, label):
    assert _verified(tmp_path, label)


def test_a_shared_norm_fails_the_parallel_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(parallel_residual, "_parallel_calls_ffn_norm", lambda *a: False)
    assert not _verified(tmp_path, TYPE)
