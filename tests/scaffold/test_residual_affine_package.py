"""End to end: a decoder whose residual adds are learned affine maps of both operands (the
remote-code folder of `affine_fixture.py`: llama with ZAYA's residual-scaling module in
place of each add), planned from its analysis, scaffolded and verified in fp32 and bf16 for
every switch setting, and its shard plan under tp=2. Seeded defects in the maps (the scales
swapped between the operands, a shift dropped, the two adds' checkpoint rows swapped) fail
verify naming the module that carries them."""

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
from affine_fixture import affine_folder  # noqa: E402

pytest.importorskip("transformers.models.zaya")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return affine_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, {"residual_affine"})


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
    ("old", "new", "file", "where"),
    [
        # the output's scale on the stream and the stream's on the output
        (
            "(out + self.out_bias) * self.out_scale + (x + self.stream_bias) * self.stream_scale",
            "(out + self.out_bias) * self.stream_scale + (x + self.stream_bias) * self.out_scale",
            "model.py",
            "layers.0.attention_residual",
        ),
        # the stream's shift dropped
        (
            "(x + self.stream_bias) * self.stream_scale",
            "x * self.stream_scale",
            "model.py",
            "layers.0.attention_residual",
        ),
        # the two adds' output scales swapped in the checkpoint map: the first layer's FFN
        # norm reads another sum than HF's
        (
            '"layers.{}.attention_residual.out_scale"',
            '"layers.{}.ffn_residual.out_scale"',
            "state_dict_adapter.py",
            "layers.0.ffn_norm",
        ),
    ],
)
def test_seeded_defects_fail_naming_the_residual_module(
    tmp_path, folder, planned, capsys, old, new, file, where
):
    models, name = write_planned(tmp_path / "models", planned)
    if file == "model.py":
        seed(models, name, old, new)
    else:  # swap the two values
        seed_swap(models, name, old, new, file=file)
    row = verify_folder(folder, models, capsys)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith(where), row["first_divergence"]


def test_package_without_the_rule_fails(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned, without="residual_affine")
    row = verify_folder(folder, models, capsys)[0]
    assert row["status"] == "fail", row
