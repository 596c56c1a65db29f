"""End to end: JetMoE's mixture of attention heads (routed query and output projections,
shared keys/values) and its MoE over stacked projection modules with an output bias.

The package scaffolds through the planner and verifies; each seeded defect in the routed
maths (routing weights dropped, the other slot's expert's output projection, a softmax over
every expert not renormalised over the k picked, keys/values interleaved as GQA's instead of
tiled over the slots) fails verify and is named at the attention of layer 0. A renamed copy
of the modeling code (no model name to go by) scaffolds the same rules.
"""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.transforms import routed_attention
from codegen.verify.cases import default_cases
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

TYPE = "jetmoe"


def _package(tmp_path):
    target = load_target(TYPE)
    plan = make_plan(target)
    assert plan.complete
    rules = [s.rule for s in plan.steps]
    assert "routed_attention" in rules and "moe_projections" in rules
    scaffold_into(
        tmp_path / "models",
        plan.reference,
        "gen_routed",
        [TYPE],
        plan.steps,
        features=target.features,
    )
    return load_spec("gen_routed", tmp_path / "models")


def _result(tmp_path, dtypes=("fp32",)):
    spec = _package(tmp_path)
    case = next(c for c in default_cases(spec) if c.label == TYPE)
    (result,) = verify_case(spec, case, list(dtypes), gradients=False, export=False)
    return result


def test_the_package_verifies(tmp_path):
    spec = _package(tmp_path)
    case = next(c for c in default_cases(spec) if c.label == TYPE)
    results = verify_case(spec, case, ["fp32", "bf16"], gradients=False, export=False)
    assert results and all(r.passed and not r.refused for r in results)
    assert all(r.roundtrip_exact for r in results)


def _seeded(monkeypatch, name: str, old: str, new: str) -> None:
    text = getattr(routed_attention, name)
    assert old in text
    monkeypatch.setattr(routed_attention, name, text.replace(old, new))


DEFECTS = {
    "routing weights dropped": ("MERGE", " * weights.unsqueeze(-1)", ""),
    "the other slot's output expert": (
        "MERGE",
        "expert_linear(out, self.wo, indices)",
        "expert_linear(out, self.wo, indices.flip(-1))",
    ),
    "softmax over every expert, not renormalised": (
        "QUERY",
        "weights = top.softmax(dim=-1).to(x.dtype)",
        "weights = logits.softmax(dim=-1).gather(-1, indices).to(x.dtype)",
    ),
    "keys and values interleaved as GQA's": (
        "TILE",
        "k.repeat(1, self.top_k, 1, 1), v.repeat(1, self.top_k, 1, 1)",
        "k.repeat_interleave(self.top_k, dim=1), v.repeat_interleave(self.top_k, dim=1)",
    ),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_a_seeded_defect_fails_at_the_attention(tmp_path, monkeypatch, defect):
    _seeded(monkeypatch, *DEFECTS[defect])
    result = _result(tmp_path)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention"), result.first_divergence


def test_the_experts_follow_another_activation(tmp_path):
    """JetMoE's experts apply `ACT2FN[config.activation_function]`: a checkpoint naming gelu
    gets gelu experts, matched against HF built from the same config."""
    spec = _package(tmp_path)
    config = tiny_config(TYPE)
    config.activation_function = "gelu"
    case = Case(f"{TYPE} activation_function=gelu", config)
    (result,) = verify_case(spec, case, ["fp32"], gradients=False, export=False)
    assert result.passed and not result.refused, result.first_divergence


def test_the_final_norm_alone_reads_the_config_epsilon(tmp_path):
    """JetMoE's layer norms keep their class's 1e-6 whatever rms_norm_eps says."""
    spec = _package(tmp_path)
    config = tiny_config(TYPE)
    config.rms_norm_eps = 0.5
    _, model, _ = spec.build(config)
    assert model.layers[0].attention_norm.eps == 1e-6
    assert model.norm.eps == 0.5
