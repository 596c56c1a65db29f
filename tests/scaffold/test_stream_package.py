"""End to end: a decoder whose embeddings are shifted and scaled by learned per-channel
vectors and whose residual stream is kept in fp32 (the remote-code folder of
`stream_fixture.py`: llama with ZAYA's input scaling and fp32 stream), planned from its
analysis, scaffolded and verified in fp32 and bf16 for every switch setting, and its shard
plan under tp=2. Seeded defects (the scale and the shift swapped in the checkpoint map, the
shift dropped, the stream left in the model's dtype) fail verify naming the right module;
without either rule the package fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import (
    plan_folder,
    seed,
    seed_swap,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

sys.path.insert(0, str(Path(__file__).parent))
from stream_fixture import stream_folder  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return stream_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, {"embedding_affine", "fp32_residual"})


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("built") / "models", planned)


def test_package_verifies(folder, built, capsys):
    models, _ = built
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    assert len(rows) >= 8 and all(row["status"] == "pass" for row in rows), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built, "tp=2")
    assert result.status == "pass", result.line()


@pytest.mark.parametrize(
    ("old", "new", "file", "dtype", "where"),
    [
        # the scale and the shift swapped in the checkpoint map
        (
            '"embedding_affine.scale"',
            '"embedding_affine.bias"',
            "state_dict_adapter.py",
            "fp32",
            "embedding",
        ),
        # the shift dropped
        ("(x + self.bias) * self.scale", "x * self.scale", "model.py", "fp32", "embedding"),
        # the residual stream left in the model's dtype
        ("h = h.float()", "h = h", "model.py", "bf16", "layers.0"),
    ],
)
def test_seeded_defects_fail_naming_the_module(
    tmp_path, folder, planned, capsys, old, new, file, dtype, where
):
    models, name = write_planned(tmp_path / "models", planned)
    if file == "model.py":
        seed(models, name, old, new)
    else:  # swap the two values
        seed_swap(models, name, old, new, file=file)
    rows = verify_folder(folder, models, capsys, dtypes=(dtype,))
    (row,) = [r for r in rows if r["dtype"] == dtype][:1]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith(where), row["first_divergence"]


@pytest.mark.parametrize(
    ("rule", "dtype"), [("embedding_affine", "fp32"), ("fp32_residual", "bf16")]
)
def test_package_without_the_rule_fails(tmp_path, folder, planned, capsys, rule, dtype):
    models, _ = write_planned(tmp_path / "models", planned, without=rule)
    row = verify_folder(folder, models, capsys, dtypes=(dtype,))[0]
    assert row["status"] == "fail", row
