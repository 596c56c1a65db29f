"""gpt_oss end to end through the planner: `codegen scaffold gpt_oss` with no hand-written
steps passes `codegen verify` (fp32 and bf16), and seeded defects in its experts fail.

The plan comes from the analyzer's Features and the rule table (rules/experts.py realises
the fused on-disk expert layout, the expert biases and the clamped SwiGLU). The default toy
never reaches gpt_oss's clamp (limit 7 vs products of ~0.3), so a second case shrinks
`swiglu_limit` until it bites: that is where the package without the clamp must fail.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into, verify_generated
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

ROOT = Path(__file__).resolve().parents[2]
EXPERT_RULES = ("experts_fused_layout", "experts_bias", "experts_clamped_swiglu")
CLAMP_LIMIT = 0.1  # below the toy's gate/up magnitudes: the clamp changes the logits


@pytest.fixture(scope="module")
def planned():
    target = load_target("gpt_oss")
    return target, make_plan(target)


def scaffold(root: Path, planned, steps=None) -> Path:
    target, plan = planned
    models = root / "models"
    steps = list(plan.steps) if steps is None else steps
    scaffold_into(
        models, plan.reference, plan.name, list(plan.model_types), steps, features=target.features
    )
    return models


@pytest.fixture(scope="module")
def good_models(tmp_path_factory, planned) -> Path:
    return scaffold(tmp_path_factory.mktemp("good"), planned)


def failures(results) -> list:
    return [
        (r.case, r.dtype, r.cosine, r.error, r.first_divergence)
        for r in results
        if r.status == "fail"
    ]


def clamp_case(models: Path, dtypes=("fp32",)):
    spec = load_spec("gpt_oss", models)
    case = Case("gpt_oss+clamped", tiny_config("gpt_oss", swiglu_limit=CLAMP_LIMIT))
    return verify_case(spec, case, list(dtypes))


def test_the_plan_is_complete_and_uses_the_expert_rules(planned):
    _, plan = planned
    assert plan.complete, plan.gaps
    rules = [step.rule for step in plan.steps if step.rule]
    assert [rule for rule in rules if rule in EXPERT_RULES] == list(EXPERT_RULES)
    layout = next(step for step in plan.steps if step.rule == "experts_fused_layout")
    assert layout.params == {"layout": "interleaved", "transposed": "auto"}


def test_planned_gpt_oss_passes_verify(good_models):
    results = verify_generated(good_models, "gpt_oss", ("fp32", "bf16"))
    assert results and not failures(results), failures(results)
    assert all(r.roundtrip_exact and not r.missing_keys for r in results if r.status == "pass")


def test_planned_gpt_oss_passes_verify_where_the_clamp_bites(good_models):
    results = clamp_case(good_models)
    assert results and not failures(results), failures(results)


def test_generated_experts_load_the_checkpoint_tensors_one_to_one(good_models):
    adapter = (good_models / "gpt_oss" / "state_dict_adapter.py").read_text()
    for row in (
        '"model.layers.{}.mlp.experts.gate_up_proj": "layers.{}.moe.experts.w13",',
        '"model.layers.{}.mlp.experts.gate_up_proj_bias": "layers.{}.moe.experts.w13_bias",',
        '"model.layers.{}.mlp.experts.down_proj": "layers.{}.moe.experts.w2",',
        '"model.layers.{}.mlp.experts.down_proj_bias": "layers.{}.moe.experts.w2_bias",',
        '"model.layers.{}.mlp.router.bias": "layers.{}.moe.gate.bias",',
    ):
        assert row in adapter
    model = (good_models / "gpt_oss" / "model.py").read_text()
    assert "gate, up = gate_up[..., ::2], gate_up[..., 1::2]" in model
    assert "hidden = clamped_swiglu(gate, up, self.alpha, self.limit)" in model
    assert "F.silu" not in model


def test_generated_gpt_oss_is_ruff_clean(good_models):
    package = str(good_models / "gpt_oss")
    for command in (["ruff", "check", package], ["ruff", "format", "--check", package]):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_interleaved_gate_up_read_as_concatenated_fails(tmp_path, planned):
    _, plan = planned
    steps = [
        dataclasses.replace(step, params={**step.params, "layout": "concat"})
        if step.rule == "experts_fused_layout"
        else step
        for step in plan.steps
    ]
    models = scaffold(tmp_path, planned, steps)
    assert "gate, up = gate_up.chunk(2, dim=-1)" in (models / "gpt_oss" / "model.py").read_text()
    results = verify_generated(models, "gpt_oss")
    assert results and all(not r.passed for r in results)


def test_experts_without_the_clamp_fail(tmp_path, good_models):
    models = tmp_path / "models"
    shutil.copytree(good_models, models)
    model = models / "gpt_oss" / "model.py"
    source = model.read_text()
    for clamp in ("    gate = gate.clamp(max=limit)\n", "    up = up.clamp(-limit, limit)\n"):
        assert clamp in source
        source = source.replace(clamp, "")
    model.write_text(source)
    results = clamp_case(models)
    assert results and all(not r.passed for r in results)
