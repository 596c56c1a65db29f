"""RoPE per layer end to end: the planner's own steps for a model that skips RoPE on some
layers by a guard of its own (exaone4: "no window, or a sliding layer") and one whose
rope_parameters are nested per layer type (gemma3_text: sliding layers rotate with another
theta) verify; without the rule's step the same package fails verify."""

from __future__ import annotations

import pytest
import torch

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.cases import default_cases
from codegen.verify.run import verify_case

CASES = {"exaone4": "nope_layers", "gemma3_text": "rope_per_layer_type"}


def _verifies(tmp_path, model_type: str, without: str | None = None) -> bool:
    target = load_target(model_type)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert without is None or any(step.rule == without for step in plan.steps)
    steps = [step for step in plan.steps if step.rule != without]
    name = f"gen_{model_type}"
    models = tmp_path / "models"
    scaffold_into(models, plan.reference, name, [model_type], steps, features=target.features)
    torch.manual_seed(0)
    spec = load_spec(name, models)
    results = verify_case(spec, default_cases(spec)[0], ["fp32"])
    return bool(results) and all(r.status != "fail" for r in results)


@pytest.mark.parametrize("model_type", sorted(CASES))
def test_the_planned_package_verifies(tmp_path, model_type):
    assert _verifies(tmp_path, model_type)


@pytest.mark.parametrize("model_type", sorted(CASES))
def test_without_the_rule_verify_fails(tmp_path, model_type):
    assert not _verifies(tmp_path, model_type, without=CASES[model_type])
