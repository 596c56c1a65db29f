"""RoFormer through the planner: the rotation reads sin/cos from the position table the
checkpoint stores (rule rope_table), in adjacent pairs (interleaved_rope); the package is
scaffolded with no hand-written step and passes verify in fp32. Seeded defects: without
interleaved_rope (q/k turned in halves) or without rope_table (sin/cos computed from the
given positions instead of read from the stored table), verify fails and names the first
layer's attention as the first diverging module."""

from __future__ import annotations

import pytest

from codegen.scaffold.pipeline import scaffold_into, verify_generated
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def _scaffold(tmp_path, without: str = ""):
    target = load_target("roformer")
    plan = make_plan(target)
    rules = [step.rule for step in plan.steps]
    assert "rope_table" in rules and "interleaved_rope" in rules
    steps = [s for s in plan.steps if not without or s.rule != without]
    models = tmp_path / "models"
    scaffold_into(models, plan.reference, "roformer", ["roformer"], steps, features=target.features)
    return verify_generated(models, "roformer", ("fp32",), switches=False)


def test_planned_package_verifies(tmp_path):
    results = _scaffold(tmp_path)
    assert results and all(r.status == "pass" for r in results), [
        (r.case, r.error, r.first_divergence) for r in results
    ]


@pytest.mark.parametrize("without", ["interleaved_rope", "rope_table"])
def test_seeded_defect_fails_at_the_first_attention(tmp_path, without):
    results = _scaffold(tmp_path, without=without)
    failed = [r for r in results if r.status == "fail"]
    assert failed, [(r.case, r.status) for r in results]
    assert "layers.0.attention" in (failed[0].first_divergence or ""), [
        (r.case, r.error, r.first_divergence) for r in failed
    ]
