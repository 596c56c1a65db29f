"""End to end: a clamped SwiGLU beside a shared expert of another, unclamped class (the
remote-code folder of `v4_moe_fixture.clamped_folder` on qwen2_moe with `plain_shared`: the
dense MLP computes DeepSeek-V4's clamped forward, the MoE builds its gated shared expert
from a SwiGLU class of its own that clamps nothing). The analysis reads the shared expert's
own class (`ffn.shared_unclamped`), so `ffn_clamped` clamps the dense MLP and builds the
shared expert unbounded; planned, scaffolded and verified in fp32 and bf16 for every switch
setting. Seeded defect: the shared expert clamped as the dense MLP is (what the package
was before the shared expert's class was read) fails verify naming the shared expert of the
first MoE layer (the toy keeps layer 0 dense)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from v4_moe_fixture import clamped_folder  # noqa: E402

pytest.importorskip("transformers.models.deepseek_v4")

UNBOUNDED = 'float("inf"), hidden_act'
SHARED = f"args.dim, args.shared_hidden_dim, {UNBOUNDED}=args.hidden_act"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    hub = tmp_path_factory.mktemp("hub")
    return clamped_folder(hub, name="larchplain", base="qwen2_moe", plain_shared=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    target, plan = plan_folder(folder)
    assert target.features.ffn.kind == "clamped_silu_glu"
    assert target.features.ffn.shared_unclamped is True
    assert "SharedMLP" in target.features.evidence["ffn.shared_unclamped"]
    steps = {step.rule: step for step in plan.steps}
    assert steps["ffn_clamped"].params["shared_unclamped"] is True
    return write_planned(tmp_path_factory.mktemp("models"), (target, plan))


def test_package_verifies(folder, built, capsys):
    models, name = built
    model = (models / name / "model.py").read_text()
    assert SHARED in model and "args.swiglu_limit" in model  # the dense MLP's
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    assert len(rows) >= 4 and all(row["status"] == "pass" for row in rows), rows


def test_a_clamped_shared_expert_fails_at_it(tmp_path, folder, built, capsys):
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, UNBOUNDED, "args.swiglu_limit, hidden_act")
    row = verify_folder(folder, models, capsys)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.1.moe.shared_experts"), row[
        "first_divergence"
    ]
