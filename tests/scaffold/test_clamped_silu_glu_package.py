"""End to end: a MoE decoder with DeepSeek-V4's clamped SwiGLU (the remote-code folder of
`v4_moe_fixture.clamped_folder`: deepseek_v3 whose MLP, dense and shared, runs DeepSeek-V4's
MLP forward and whose fused routed experts run its `_apply_gate`), planned from its analysis
(ffn.kind clamped_silu_glu for the MLP, ffn.experts_clamp for the experts), scaffolded and
verified in fp32 and bf16 for every switch setting, and its shard plan under tp=2. Seeded
defects fail verify naming the module that holds them: the dense MLP's gate unclamped, the
experts' gate clamped after the silu (Step-3.5's side), the MLP's up unclamped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import (
    plan_folder,
    seeded_copy,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

sys.path.insert(0, str(Path(__file__).parent))
from v4_moe_fixture import clamped_folder  # noqa: E402

pytest.importorskip("transformers.models.deepseek_v4")

# (the generated model.py's text, the defect, the module verify names first)
DEFECTS = {
    "dense-gate-unclamped": (
        "self.act(self.w1(x).clamp(max=self.limit))",
        "self.act(self.w1(x))",
        "layers.0.feed_forward",
    ),
    "experts-clamp-after-silu": (
        "self.act(gate.clamp(max=self.limit))",
        "self.act(gate).clamp(max=self.limit)",
        "layers.1.moe.experts",
    ),
    "up-unclamped": (
        "self.w3(x).clamp(-self.limit, self.limit)",
        "self.w3(x)",
        "layers.0.feed_forward",
    ),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return clamped_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder)
    steps = {step.rule: step for step in plan.steps}
    assert steps["ffn_clamped"].params["limit"] == "swiglu_limit"
    assert steps["experts_clamped"].params["limit"] == "swiglu_limit"
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def _verify(folder, models, capsys, *dtypes: str) -> list[dict]:
    return verify_folder(folder, models, capsys, dtypes=dtypes or ("fp32",))


def test_package_verifies(folder, built, capsys):
    models, name = built
    model = (models / name / "model.py").read_text()
    assert model.count("args.swiglu_limit") == 3  # dense MLP, shared expert, routed experts
    rows = _verify(folder, models, capsys, "fp32", "bf16")
    # deepseek_v3's own code cannot run head_dim=None (verify skips it, as for deepseek_v3)
    ran = [row for row in rows if not row["case"].endswith("+head_dim=None")]
    assert len(ran) >= 8 and all(row["status"] == "pass" for row in ran), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built, "tp=2")
    assert result.status == "pass", result.line()


@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_seeded_defect_fails_at_its_module(tmp_path, folder, built, capsys, defect):
    old, new, where = DEFECTS[defect]
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, old, new)
    row = _verify(folder, models, capsys)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith(where), row["first_divergence"]
