"""End to end: Inkling-2's full-attention layers read their queries', keys' and values'
inputs through block attention residuals of three queries (`inkling2_full_fixture` with
`block_residuals`: the full layers' depth module's three outputs, each through the layer's
query, key or value input norm, beside the sliding layers' one-query residuals). Planned from
the analysis, scaffolded and verified against the folder's own code in fp32, bf16 and on
tp=2. Seeded defects, each a wrong routing of the three queries, fail verify and name the
full layer's attention."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import (
    plan_folder,
    seed,
    seeded_copy,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

sys.path.insert(0, str(Path(__file__).parent))
from inkling2_full_fixture import derive_full  # noqa: E402

pytest.importorskip("transformers.models.inkling2")

NAME = "quillqueries"
FULL_LAYER = "layers.5.attention"  # the toy's one full-attention layer


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive_full(tmp_path_factory.mktemp("hub"), NAME, block_residuals=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder) -> Path:
    planned = plan_folder(folder, rules=("attention_residuals", "layer_kv_inputs"))
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _base(rows: list[dict]) -> list[dict]:
    return [row for row in rows if "+" not in row["case"]]


def test_package_verifies_in_fp32_and_bf16(folder, built, capsys):
    model = (built / NAME / "model.py").read_text()
    assert "self.attention_input = DepthQueries(args.dim, args.attn_res_eps, 3)" in model
    assert "self.key_norm(attention_in[1]).to(dtype)" in model
    rows = _base(verify_folder(folder, built, capsys, dtypes=("fp32", "bf16")))
    assert len(rows) == 2 and all(row["status"] == "pass" for row in rows), rows


@pytest.mark.parametrize(
    "edits",
    [
        # the keys read the values' query and the values the keys'
        [
            ("attention_in[1]", "@k@"),
            ("attention_in[2]", "attention_in[1]"),
            ("@k@", "attention_in[2]"),
        ],
        # the queries' output read for all three inputs
        [("attention_in[1]", "attention_in[0]"), ("attention_in[2]", "attention_in[0]")],
    ],
    ids=["k_v_swapped", "one_query"],
)
def test_seeded_defects_fail_and_name_the_module(tmp_path, folder, built, capsys, edits):
    models = seeded_copy(built, tmp_path / "models", NAME, *edits[0])
    for old, new in edits[1:]:
        seed(models, NAME, old, new)
    (row,) = _base(verify_folder(folder, models, capsys))
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(FULL_LAYER), row


def test_shard_plan_passes_on_tp2(folder, built):
    """tp=2: the three-query depth module is whole on every rank, as the one-query ones."""
    result = verify_shard_plan(folder, built, NAME)
    assert result.status == "pass", result.line()
