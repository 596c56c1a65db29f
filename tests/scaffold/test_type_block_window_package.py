"""End to end: a prefix LM with sliding layers (`prefix_window_fixture.py`: hrm_text's copy
with every other layer windowed, both of its masks given the token types' block ids). The
plan takes the window pattern and the type block together; the package joins the block to
each layer's mask as transformers' builders do (`or_masks` after the window), so the type-1
tokens see each other beyond the window, and verify proves every setting in fp32 and bf16.
Seeded defects (the sliding layers' mask without the block, the full layers' without it)
fail verify naming the first attention of that kind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from prefix_window_fixture import prefix_window_folder  # noqa: E402

pytest.importorskip("transformers.models.hrm_text")

RULES = ("type_block_mask", "sliding_window_pattern", "recurrent_stacks")
JOIN = "            window = type_block_mask(token_type_ids, 1, window)\n"
HANDED = "h = layer(h, rope, window if layer.sliding else mask)"
# (old, new, the attention that shows it first: layer 0 slides, layer 1 attends fully)
DEFECTS = {
    "window-without-block": (JOIN, "", "inner.layers.0.attention"),
    "full-without-block": (
        HANDED,
        "h = layer(h, rope, window if layer.sliding else None)",
        "inner.layers.1.attention",
    ),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return prefix_window_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    planned = plan_folder(folder, rules=RULES)
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def test_package_joins_the_block_to_each_mask_and_verifies(folder, built, capsys):
    models, name = built
    model = (models / name / "model.py").read_text()
    assert JOIN in model and HANDED in model
    assert "mask = type_block_mask(token_type_ids, 1)" in model
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    cases = {row["case"].partition("+")[2] for row in rows}
    assert {"", "prefix_lm=False"} <= cases, rows
    assert all(row["status"] == "pass" and row["packed_ok"] for row in rows), rows


@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_seeded_defect_fails_at_the_attention(tmp_path, folder, built, capsys, defect):
    old, new, attention = DEFECTS[defect]
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, old, new)
    (row,) = verify_folder(folder, models, capsys, switches=False)
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith(attention), row["first_divergence"]
