"""End to end: ZAYA's MoE router (logits from an MLP over a down-projection, the later
layers adding the previous layer's state, a skip class past the experts' rows) together
with its embeddings' shift and scale and its fp32 residual stream, on the remote-code folder
of `router_fixture.py` (zaya with plain q/k/v projections), planned from its analysis,
scaffolded and verified in fp32 and bf16 for every switch setting, and its shard plan under
tp=2. Seeded defects (the carried state dropped, a skip pick routed to an expert) fail
verify naming the MoE they are in; without the rule the package fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import (
    plan_folder,
    seed,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

sys.path.insert(0, str(Path(__file__).parent))
from router_fixture import router_folder  # noqa: E402

pytest.importorskip("transformers.models.zaya")

RULES = {"router_mlp", "embedding_affine", "fp32_residual", "residual_affine"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return router_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, RULES)


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("built") / "models", planned)


def test_package_verifies(folder, built, capsys):
    """lm_head_bias=True is refused in one line (the package hard-codes no head bias)."""
    models, _ = built
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    ran = [row for row in rows if row["status"] != "refused"]
    assert len(ran) >= 8 and all(row["status"] == "pass" for row in ran), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built, "tp=2")
    assert result.status == "pass", result.line()


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        # the previous layer's state not read: the first layer that adds it differs
        ("h = h + state * self.state_scale", "h = h + self.state_scale", "layers.1.moe.router"),
        # a token picking the skip class runs expert 0 at its score
        (
            "weights, indices = weights.masked_fill(skip, 0), indices.masked_fill(skip, 0)",
            "indices = indices.masked_fill(skip, 0)",
            "layers.",
        ),
    ],
)
def test_seeded_defects_fail_naming_the_moe(tmp_path, folder, planned, capsys, old, new, where):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, old, new)
    failed = [row for row in verify_folder(folder, models, capsys) if row["status"] == "fail"]
    assert failed, "no setting failed"
    named = [row["first_divergence"] for row in failed]
    assert any(d.startswith(where) and ".moe" in d for d in named), named


def test_package_without_the_rule_fails(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned, without="router_mlp")
    rows = verify_folder(folder, models, capsys)
    assert rows and all(row["status"] not in ("pass", "refused") for row in rows[:1]), rows
