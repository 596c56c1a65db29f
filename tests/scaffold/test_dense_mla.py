"""End to end: MiniCPM3, a dense MLA model, from the deepseek_v3 reference with its MoE taken
out (dense_ffn) and its scales (a scaled-embedding module's scale_emb, the residual scale
scale_depth / sqrt(layers)); verify passes, and fails without the residual step (the
multiplier read as its first field alone was the bug this guards)."""

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
    target = load_target("minicpm3")
    plan = make_plan(target)
    assert plan.reference == "deepseek_v3" and plan.complete
    assert {"dense_ffn", "embedding_scale", "residual_scale"} <= {s.rule for s in plan.steps}
    # the reference's dense-or-MoE layer choice goes with its MoE: no rule settles it
    assert "every_layer_moe" not in {s.rule for s in plan.steps}
    return target, plan


@pytest.mark.parametrize("without", [None, "residual_scale"])
def test_minicpm3_verifies_only_with_every_step(tmp_path, planned, without):
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
    model = (models / plan.name / "model.py").read_text()
    assert "class MoE" not in model and "class Gate" not in model
    case = Case("minicpm3+test", tiny_config("minicpm3"))
    results = verify_case(load_spec(plan.name, models), case, ["fp32"])
    assert all(r.passed for r in results) is (without is None), [r.error for r in results]
