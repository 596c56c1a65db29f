"""End to end: Ministral3's logn query scale, planned from its analysis (llama + logn_attention),
scaffolded and verified against the installed transformers model; without the step verify
fails. The toy's original context (16) is shorter than the test positions (up to 37), so the
scale differs from 1 there."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config


@pytest.fixture(scope="module")
def planned():
    target = load_target("ministral3")
    plan = make_plan(target)
    assert plan.complete and "logn_attention" in {step.rule for step in plan.steps}
    return target, plan


@pytest.mark.parametrize("without", [None, "logn_attention"])
def test_ministral3_verifies_only_with_the_logn_scale(tmp_path, planned, without):
    target, plan = planned
    steps = [step for step in plan.steps if step.rule != without]
    models = tmp_path / "models"
    scaffold_into(
        models,
        plan.reference,
        plan.name,
        list(plan.model_types),
        steps,
        features=target.features,
        target=target,
    )
    case = Case("ministral3+test", tiny_config("ministral3"))
    results = verify_case(load_spec(plan.name, models), case, ["fp32"])
    assert all(r.passed for r in results) is (without is None), [r.error for r in results]
