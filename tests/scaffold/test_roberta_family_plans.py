"""RoBERTa-family and other BERT-family causal LMs through the planner: roberta (positions
counted over the non-padding tokens, a one-module prediction head) and big_bird (its pooler's
weights dropped) are scaffolded with no hand-written step and pass verify in fp32; without
padded_positions or drop_unused_keys they fail."""

from __future__ import annotations

import pytest

from codegen.scaffold.pipeline import scaffold_into, verify_generated
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def _scaffold(tmp_path, model_type: str, without: str = ""):
    target = load_target(model_type)
    plan = make_plan(target)
    assert not without or without in [step.rule for step in plan.steps]
    steps = [s for s in plan.steps if not without or s.rule != without]
    models = tmp_path / "models"
    name = model_type.replace("-", "_")
    scaffold_into(models, plan.reference, name, [model_type], steps, features=target.features)
    return verify_generated(models, name, ("fp32",), switches=False)


def _failed(results) -> bool:
    return any(r.status == "fail" for r in results)


@pytest.mark.parametrize(
    "model_type, rule", [("roberta", "padded_positions"), ("big_bird", "drop_unused_keys")]
)
def test_planned_package_verifies_and_fails_without_the_rule(tmp_path, model_type, rule):
    results = _scaffold(tmp_path / "with", model_type)
    assert results and not _failed(results), [(r.case, r.error) for r in results]
    assert _failed(_scaffold(tmp_path / "without", model_type, without=rule))
