"""End to end: a decoder whose sublayers are joined by DeepSeek-V4's hyper-connections (the
remote-code folder of `hyper_fixture.py`: llama with DeepSeek-V4's own modules), planned
from its analysis, scaffolded and verified in fp32 and bf16 for every switch setting, and its
shard plan under tp=2. Seeded defects in the hyper-connection maths (the Sinkhorn
normalisation skipped, the write-back mix transposed, the streams collapsed by their mean)
fail verify naming the first layer."""

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
from hyper_fixture import hyper_folder  # noqa: E402

pytest.importorskip("transformers.models.deepseek_v4")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return hyper_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, {"hyper_connections"})


def test_package_verifies(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned)
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    assert len(rows) >= 8 and all(row["status"] == "pass" for row in rows), rows


def test_shard_plan_under_tp2(tmp_path, folder, planned):
    models, name = write_planned(tmp_path / "models", planned)
    result = verify_shard_plan(folder, models, name, "tp=2")
    assert result.status == "pass", result.line()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the Sinkhorn normalisation skipped: the mix is the softmax as it is
        (
            "for _ in range(self.sinkhorn_iters - 1):",
            "for _ in range(0):",
        ),
        # the write-back mix transposed: stream k feeds stream j
        ("torch.matmul(comb.mT, h)", "torch.matmul(comb, h)"),
        # the sublayer's input as the streams' mean
        ("x = (pre.unsqueeze(-1) * h).sum(dim=2).to(h.dtype)", "x = h.mean(dim=2)"),
    ],
)
def test_seeded_defects_fail_in_the_first_layer(tmp_path, folder, planned, capsys, old, new):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, old, new)
    row = verify_folder(folder, models, capsys)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.0"), row["first_divergence"]


def test_final_collapse_by_mean_fails(tmp_path, folder, planned, capsys):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, "return (pre.unsqueeze(-1) * h).sum(dim=2).to(h.dtype)", "return h.mean(2)")
    row = verify_folder(folder, models, capsys)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("stream_collapse"), row["first_divergence"]


def test_package_without_the_rule_fails(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned, without="hyper_connections")
    row = verify_folder(folder, models, capsys)[0]
    assert row["status"] == "fail", row
