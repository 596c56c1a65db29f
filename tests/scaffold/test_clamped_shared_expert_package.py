"""End to end: a clamped SwiGLU whose shared expert the scaffold builds (the remote-code
folder of `v4_moe_fixture.clamped_folder` on qwen2_moe: its MLP class, run as the dense MLP
and as the gated shared expert, computes DeepSeek-V4's MLP forward and its fused routed
experts its `_apply_gate`). The closest reference has no shared expert, so `ffn_clamped`
must clamp the one `moe_shared_experts` adds as well as the dense MLP; planned from the
analysis, scaffolded and verified in fp32 and bf16 for every switch setting, and its shard
plan under tp=2. Seeded defect: the shared expert built unclamped (an infinite limit) fails
verify naming the shared expert of the first MoE layer (the toy keeps layer 0 dense)."""

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

# the shared expert's construction (the dense MLP's reads args.hidden_dim)
SHARED = "args.dim, args.shared_hidden_dim, args.swiglu_limit, hidden_act=args.hidden_act"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return clamped_folder(tmp_path_factory.mktemp("hub"), name="larchqwen", base="qwen2_moe")


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder)
    rules = [step.rule for step in plan.steps]
    # the reference has no shared expert: the moe rows build it, the clamp comes after
    assert rules.index("moe_shared_experts") < rules.index("ffn_clamped"), rules
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def test_package_verifies(folder, built, capsys):
    models, name = built
    model = (models / name / "model.py").read_text()
    assert SHARED in model
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    assert len(rows) >= 4 and all(row["status"] == "pass" for row in rows), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built, "tp=2")
    assert result.status == "pass", result.line()


def test_an_unclamped_shared_expert_fails_at_it(tmp_path, folder, built, capsys):
    models, name = tmp_path / "models", built[1]
    unclamped = SHARED.replace("args.swiglu_limit", 'float("inf")')
    seeded_copy(built[0], models, name, SHARED, unclamped)
    row = verify_folder(folder, models, capsys)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.1.moe.shared_experts"), row[
        "first_divergence"
    ]
