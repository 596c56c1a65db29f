"""End to end: HunYuan's q/k norms after RoPE and its fixed-alpha "dynamic" rope.

hunyuan_v1_dense is planned from its analysis (qwen3 + qk_norm_after_rope + ntk_alpha_rope),
scaffolded and verified against the installed transformers model; dropping either step makes
verify fail, so both tests have teeth. The toy config's rope is the plain default, so the
alpha case sets the rope type real checkpoints carry ("dynamic" with an `alpha`).
"""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

ALPHA_ROPE = {"rope_type": "dynamic", "factor": 2.0, "alpha": 8.0, "rope_theta": 10000.0}


@pytest.fixture(scope="module")
def planned():
    target = load_target("hunyuan_v1_dense")
    plan = make_plan(target)
    assert plan.complete and {"qk_norm_after_rope", "ntk_alpha_rope"} <= {
        step.rule for step in plan.steps
    }
    return target, plan


def _verify(tmp_path, planned, without=None, **overrides):
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
    case = Case("hunyuan_v1_dense+test", tiny_config("hunyuan_v1_dense", **overrides))
    return verify_case(load_spec(plan.name, models), case, ["fp32"])


def test_alpha_rope_and_late_qk_norm_verify(tmp_path, planned):
    results = _verify(tmp_path, planned, rope_parameters=dict(ALPHA_ROPE))
    assert all(r.passed for r in results), [(r.error, r.first_divergence) for r in results]


@pytest.mark.parametrize(
    ("without", "overrides"),
    [("ntk_alpha_rope", {"rope_parameters": ALPHA_ROPE}), ("qk_norm_after_rope", {})],
)
def test_without_the_step_verify_fails(tmp_path, planned, without, overrides):
    results = _verify(tmp_path, planned, without=without, **overrides)
    assert not any(r.passed for r in results)
