"""End to end: a prefix LM with sliding layers under written-out attention
(`prefix_window_softcap_fixture.py`: the prefix-window copy whose eager attention soft-caps
its scores). The soft-cap rule writes the attention out before `type_block_mask` runs, so
the layers already take the keys each mask hides, tables built once per forward: the block
joins the window and the causal mask before their tables are built, and the causal layers
take the table of the causal mask with the block. Verify proves every setting in fp32 and
bf16; seeded defects (the window's table without the block, the full layers handed the
plain causal table) fail naming the first attention of that kind."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from prefix_window_softcap_fixture import prefix_window_softcap_folder  # noqa: E402

pytest.importorskip("transformers.models.hrm_text")

RULES = ("attention_softcap", "type_block_mask", "sliding_window_pattern", "recurrent_stacks")
JOIN = "            window = type_block_mask(token_type_ids, 1, window)\n"
HANDED = "hidden_window if layer.sliding else hidden_mask"
# (old, new, the attention that shows it first: layer 0 slides, layer 1 attends fully); the
# window's mask left as it is, or the causal one (its table then `future`)
DEFECTS = {
    "window-without-block": (JOIN, "", "inner.layers.0.attention"),
    "full-without-block": (
        "            mask = type_block_mask(token_type_ids, 1)\n",
        "",
        "inner.layers.1.attention",
    ),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return prefix_window_softcap_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    planned = plan_folder(folder, rules=RULES)
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def test_the_block_joins_each_mask_before_its_table_is_built(built):
    """Both masks gain the block before the tables of the keys they hide are built from them
    (once per forward), and the full layers take the causal mask's table, not `future`."""
    models, name = built
    model = (models / name / "model.py").read_text()
    assert JOIN in model and HANDED in model
    line = {
        ast.unparse(n.targets[0]): n.lineno
        for n in ast.walk(ast.parse(model))
        if isinstance(n, ast.Assign) and len(n.targets) == 1
    }
    assert max(line["mask"], line["window"]) < line["future"] < line["hidden_mask"]
    assert line["future"] < line["hidden_window"]


def test_written_out_typed_windowed_attention_verifies(folder, built, capsys):
    rows = verify_folder(folder, built[0], capsys, dtypes=("fp32", "bf16"))
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
