"""Where router_half_logits is planned: a router projecting in the model's dtype on the
deepseek_v3 reference (whose Gate projects in fp32), its scores upcast or not as the
target's are; never for a target projecting in fp32, nor from a reference whose router
already projects in the model's dtype."""

from __future__ import annotations

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target

RULE = "router_half_logits"


def _steps(model_type: str, reference: str) -> dict:
    plan = make_plan(load_target(model_type), reference=reference)
    return {step.rule: step for step in plan.steps}


@pytest.mark.parametrize(
    ("model_type", "scores_fp32"), [("minimax_m2", True), ("deepseek_v4", False)]
)
def test_planned_on_deepseek_v3_for_a_half_router(model_type, scores_fp32):
    assert load_target(model_type).features.moe.router_fp32 is False
    steps = _steps(model_type, "deepseek_v3")
    assert steps[RULE].params == {"scores_fp32": scores_fp32}
    assert "moe_router_half_scores" not in steps  # the Gate's scores follow the rule's param


def test_not_planned_for_an_fp32_router():
    assert RULE not in _steps("deepseek_v3", "deepseek_v3")


def test_not_planned_from_a_half_reference():
    assert RULE not in _steps("minimax_m2", "qwen3_moe")
