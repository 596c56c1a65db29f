"""Where router_ungrouped_gate is planned: a sigmoid top-k router without expert groups on
the deepseek_v3 reference, whose Gate picks inside the groups its from_hf_config reads
(n_group, topk_group); not for a grouped router there, and never from a reference that
reads neither (qwen3's MoE, where moe_router writes the router)."""

from __future__ import annotations

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target

RULE = "router_ungrouped_gate"


def _rules(model_type: str, reference: str | None = None) -> tuple[str, list[str]]:
    plan = make_plan(load_target(model_type), reference=reference)
    return plan.reference, [step.rule for step in plan.steps]


@pytest.mark.parametrize("model_type", ["kolibri1", "minimax_m2"])
def test_not_planned_from_a_reference_without_groups(model_type):
    reference, rules = _rules(model_type)
    assert reference != "deepseek_v3" and "moe_router" in rules, (reference, rules)
    assert RULE not in rules


def test_planned_on_deepseek_v3_for_a_router_without_groups():
    assert load_target("kolibri1").features.moe.router == "sigmoid_topk"
    _, rules = _rules("kolibri1", reference="deepseek_v3")
    assert RULE in rules and "moe_router" not in rules, rules


def test_not_planned_for_a_grouped_router():
    assert load_target("deepseek_v3").features.moe.router == "grouped_topk"
    _, rules = _rules("deepseek_v3", reference="deepseek_v3")
    assert RULE not in rules
