"""Bias switches in plans: read where the target switches them, fixed where it cannot.

llama's reference switches q/k/v/o biases on `attention_bias` and gate/up/down on
`mlp_bias`. A target reads its own switch for the same projections, or gets the analysed
value hard-coded where no switch of its config covers them; a reference that fixes the
biases reads the target's switch for exactly those projections.
"""

from __future__ import annotations

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target

# model_type -> {rule id: the `enabled` parameter of its step}; absent: no step
EXPECTED = {
    "granite": {},  # attention_bias / mlp_bias switch exactly llama's projections
    "mistral": {"qkv_bias": False, "o_bias": False, "ffn_bias": False},  # no such fields
    "helium": {"o_bias": False},  # its attention_bias never biases o_proj
    "stablelm": {"qkv_bias": "use_qkv_bias", "o_bias": False, "ffn_bias": False},
    "arcee": {"ffn_bias": False},  # mlp_bias biases up/down of an ungated MLP only
    # attention_bias biases its fused query_key_value (q/k/v) and dense; no MLP switch
    "gpt_neox": {"ffn_bias": True},
    "deepseek_v3": {},  # the reference's attention_bias biases wq_a/wkv_a/wo, as HF
    "doge": {"ffn_bias": "mlp_bias"},  # its reference (qwen3) fixes the MLP biases off
}


@pytest.mark.parametrize("model_type", sorted(EXPECTED))
def test_bias_steps(model_type):
    plan = make_plan(load_target(model_type))
    steps = {
        step.rule: step.params["enabled"]
        for step in plan.steps
        if step.rule in ("qkv_bias", "o_bias", "ffn_bias")
    }
    assert steps == EXPECTED[model_type]


def test_a_number_a_choice_names_is_a_setting_to_guard():
    """granitemoeshared branches on `shared_intermediate_size == 0` (no shared MLP): the
    planned package, which builds none, pins that case; a size is no such setting."""
    plan = make_plan(load_target("granitemoeshared"))
    guard = next(step for step in plan.steps if step.transform == "guard_switches")
    assert guard.params["settings"]["shared_intermediate_size"] == 0
    assert "hidden_size" not in guard.params["settings"]
