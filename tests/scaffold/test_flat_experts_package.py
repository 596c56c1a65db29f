"""End to end: DBRX's flat expert matrices (w1/v1/w2, one [experts * ffn, hidden] each).

The adapter splits them into the house's 3-D experts on load and flattens them back on save,
with the roles read from the forward (the activated product is the gate, the block used as
`x @ w` is the down projection, stored [in, out]). The package verifies; with gate and up
read the other way round (same shapes), verify fails and names the MoE of layer 0. The
expert-weight norm's p (`ffn_config.moe_normalize_expert_weights`), which the package does
not read, is pinned: None is refused in one line; so is the experts' activation.
"""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.transforms import flat_experts
from codegen.verify.cases import default_cases
from codegen.verify.run import verify_case
from codegen.verify.tiny_config import tiny_config

TYPE = "dbrx"


def _results(tmp_path, label: str):
    target = load_target(TYPE)
    plan = make_plan(target)
    assert "experts_flat_layout" in [s.rule for s in plan.steps]
    scaffold_into(
        tmp_path / "models",
        plan.reference,
        "gen_flat",
        [TYPE],
        plan.steps,
        features=target.features,
    )
    spec = load_spec("gen_flat", tmp_path / "models")
    case = next(c for c in default_cases(spec) if c.label == label)
    return verify_case(spec, case, ["fp32"], gradients=False, export=False)


def test_the_package_verifies(tmp_path):
    results = _results(tmp_path, TYPE)
    assert results and all(r.passed and not r.refused for r in results)
    assert all(r.roundtrip_exact for r in results)


def test_gate_and_up_swapped_fail_at_the_moe(tmp_path, monkeypatch):
    monkeypatch.setattr(flat_experts, "HOUSE", {"gate": "w3", "up": "w1", "down": "w2"})
    (result,) = _results(tmp_path, TYPE)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.moe (HF transformer.blocks.0.ffn)")


def test_the_unread_norm_power_is_refused_when_none(tmp_path):
    (result,) = _results(tmp_path, f"{TYPE}+ffn_config.moe_normalize_expert_weights=None")
    assert result.refused and "moe_normalize_expert_weights" in result.refused


def test_another_expert_activation_is_refused(tmp_path):
    target = load_target(TYPE)
    plan = make_plan(target)
    scaffold_into(
        tmp_path / "models",
        plan.reference,
        "gen_flat",
        [TYPE],
        plan.steps,
        features=target.features,
    )
    spec = load_spec("gen_flat", tmp_path / "models")
    config = tiny_config(TYPE)
    spec.build(config)  # the toy's silu builds
    config.ffn_config.ffn_act_fn = {"name": "gelu"}
    with pytest.raises(NotImplementedError, match="ffn_act_fn"):
        spec.build(config)


def test_the_toy_builds_in_transformers():
    config = tiny_config(TYPE)
    assert config.attn_config.clip_qkv == 1.0  # None: transformers' DBRX clamps with None
    assert config.attn_config.rope_theta == 10_000.0  # read, never set by the class
