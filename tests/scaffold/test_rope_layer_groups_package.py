"""End to end: the DeepSeek-V4 RoPE folder of `v4_rope_fixture.py` whose attention picks
its rope group per layer (`"near" if layer_idx % 2 else "far"`, DeepSeek-V4's form of a
label chosen by a test in `__init__`: its sliding layers "main", its compressed ones
"compress"), planned from its analysis (`rope.group` = "far", the first layer's;
`rope.layer_groups` = "near" where `i % 2`), scaffolded and verified in fp32 and bf16 and
under tp=2. Seeded defects (the layers' test negated, the other group read as the first)
fail verify naming the first layer the wrong table reaches; without the step the package
fails too."""

from __future__ import annotations

from pathlib import Path

import pytest
from v4_rope_fixture import NAME, v4_rope_folder

from codegen.scaffold.testing import (
    plan_folder,
    seeded_copy,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

PICK = '"near" if layer_idx % 2 else "far"'
LAYERS = "if i % 2)"
OTHER = 'hf_config.rope_parameters["near"]'


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return v4_rope_folder(tmp_path_factory.mktemp("hub"), pick=PICK)


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, rules=("rope_group", "rope_layer_groups"))
    rope = target.features.rope
    assert rope.group == "far" and rope.theta == 1.6e5
    assert rope.layer_groups == {"other": "near", "test": "i % 2"}
    assert "rope_parameters['near'] where i % 2" in target.features.evidence["rope.layer_groups"]
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _base(folder: Path, models: Path, capsys) -> dict:
    (row,) = verify_folder(folder, models, capsys, "--dtype", "fp32", dtypes=(), switches=False)
    return row


def test_package_verifies(folder, built, capsys):
    args = (built / NAME / "args.py").read_text()
    assert OTHER in args and LAYERS in args
    rows = verify_folder(folder, built, capsys, dtypes=("fp32", "bf16"))
    assert len(rows) >= 2 and all(row["status"] == "pass" for row in rows), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, built, NAME)
    assert result.status == "pass", result.line()


@pytest.mark.parametrize(
    "old, new, layer",
    [
        (LAYERS, "if not i % 2)", "layers.0.attention"),  # each layer the other's table
        (OTHER, 'hf_config.rope_parameters["far"]', "layers.1.attention"),  # one table twice
    ],
    ids=["test_negated", "first_group_twice"],
)
def test_seeded_defects_fail_at_the_attention(tmp_path, folder, built, capsys, old, new, layer):
    models = seeded_copy(built, tmp_path / "models", NAME, old, new, file="args.py")
    row = _base(folder, models, capsys)
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(layer), row


def test_without_the_step_the_package_fails(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned, without="rope_layer_groups")
    row = _base(folder, models, capsys)
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.1.attention"), row
