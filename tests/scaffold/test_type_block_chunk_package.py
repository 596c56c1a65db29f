"""End to end: a prefix LM with chunked layers (`prefix_chunk_fixture.py`: hrm_text's copy
with every other layer chunked, llama4-style, both of its masks given the token types' block
ids). The analysis reads the chunked mask the backbone above the layer stacks builds, the
plan takes the chunks and the type block together (before, the chunks were not read there
and the package attended causally on every layer, its plan complete); the package joins the
block to the chunk mask as transformers' builders do (`or_masks` after the chunks are cut),
so the type-1 tokens see each other across chunks, and verify proves every setting in fp32
and bf16, packed documents included. Seeded defects fail verify naming the first chunked
attention: the chunk mask without the block, and the block cut at the chunks' edges (no
longer reaching across chunks)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from prefix_chunk_fixture import prefix_chunk_folder  # noqa: E402

pytest.importorskip("transformers.models.hrm_text")

RULES = ("type_block_mask", "chunked_attention", "recurrent_stacks")
JOIN = "            chunks = type_block_mask(token_type_ids, 1, chunks)\n"
HANDED = "h = layer(h, rope, chunks if layer.chunked else mask)"
# (old, new): layer 0 is chunked, so both show first at its attention
DEFECTS = {
    "chunk-without-block": (JOIN, ""),
    # the block kept inside each chunk (both ways there): it no longer reaches across chunks
    "block-across-chunks": (
        JOIN,
        "            chunks = type_block_mask(token_type_ids, 1, chunks) & (chunks | chunks.T)\n",
    ),
}
ATTENTION = "inner.layers.0.attention"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return prefix_chunk_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    planned = plan_folder(folder, rules=RULES)
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def test_package_joins_the_block_to_the_chunks_and_verifies(folder, built, capsys):
    models, name = built
    model = (models / name / "model.py").read_text()
    assert JOIN in model and HANDED in model
    assert "mask = type_block_mask(token_type_ids, 1)" in model
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    cases = {row["case"].partition("+")[2] for row in rows}
    assert {"", "prefix_lm=False"} <= cases, rows
    assert {row["dtype"] for row in rows} == {"fp32", "bf16"}, rows
    assert all(row["status"] == "pass" and row["packed_ok"] for row in rows), rows


@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_seeded_defect_fails_at_the_chunked_attention(tmp_path, folder, built, capsys, defect):
    old, new = DEFECTS[defect]
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, old, new)
    (row,) = verify_folder(folder, models, capsys, switches=False)
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith(ATTENTION), row["first_divergence"]
