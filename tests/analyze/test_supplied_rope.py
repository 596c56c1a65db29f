"""A rotation applied only when an optional input is given, which the stack does give.

RoFormer's attention rotates q and k under `if sinusoidal_pos is not None`; the parameter
defaults to None, so the attention traced alone (the default call) never turns. The stack
computes the table rows once (`embed_positions(...)`) and hands them through every layer to
every attention: the analysis traces the attention again with that input present, finds the
interleaved rotation, reads the rotary dim from the table's row width, and records the
table the checkpoint stores (`rope.table`: sin and cos are its rows by sequence index, which
the package must read, not compute from positions); that table is no token or position
table of the embeddings. On a copy whose names are all rewritten the findings are the same;
where the stack hands None instead, there is no rotation.
"""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

_RENAMES = (
    ("sinusoidal_pos", "rows"),
    ("apply_rotary_position_embeddings", "turn"),
    ("embed_positions", "table"),
    ("rotate_half_query_layer", "q_turned"),
    ("rotate_half_key_layer", "k_turned"),
)


def _copy(tmp_path, *, stack_hands_none: bool = False) -> str:
    path, _ = rename_model("roformer", "zorblax", str(tmp_path))
    source = open(path, encoding="utf-8").read()
    if stack_hands_none:
        call = "                attention_mask,\n                sinusoidal_pos,\n"
        assert source.count(call) == 1
        source = source.replace(call, "                attention_mask,\n                None,\n")
    for old, new in _RENAMES:
        assert old in source
        source = source.replace(old, new)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    return path


def _summary(features) -> dict:
    return {
        "type": features.rope.type,
        "interleaved": features.rope.interleaved,
        "partial": features.rope.partial_rotary,
        "positions": features.embedding.positions,
        "table": features.rope.table,
        "table_at": features.evidence.get("rope.table", ""),
        "embedding_module": features.embedding.module,
        "unsupported": [u.feature for u in features.unsupported],
    }


def test_roformer_rotation_is_found_through_the_supplied_input():
    found = _summary(analyze("roformer"))
    assert found["type"] == "default"
    assert found["interleaved"] is True
    assert found["partial"] == 1.0  # rows of head_dim: sin and cos halves of head_dim / 2
    assert found["positions"] == "none"  # the table turns q/k; nothing is added to embeddings
    assert found["table"] == "roformer.encoder.embed_positions"
    assert found["table_at"].startswith("modeling_roformer.py:394")  # the table's construction
    assert found["embedding_module"] is True  # roformer.embeddings, not the rope table
    assert found["unsupported"] == []


def test_renamed_copy_gives_the_same_findings(tmp_path):
    found = _summary(analyze(_copy(tmp_path)))
    assert found["type"] == "default" and found["interleaved"] is True
    assert found["partial"] == 1.0 and found["positions"] == "none"
    assert found["table"] == "zorblax.encoder.table"
    assert found["table_at"].startswith("modeling_zorblax.py:")
    assert found["embedding_module"] is True and found["unsupported"] == []


@pytest.mark.parametrize("model_type", ["bert", "xmod"])
def test_attention_without_a_rotation_is_unchanged(model_type):
    """BERT-family attention: the stack supplies its mask, but nothing in it turns q/k."""
    found = _summary(analyze(model_type))
    assert found["type"] == "none" and found["table"] is None


def test_stack_handing_none_means_no_rotation(tmp_path):
    """The same attention, but the stack passes None for the table rows: the default call
    is the real one, and nothing turns."""
    found = _summary(analyze(_copy(tmp_path, stack_hands_none=True)))
    assert found["type"] == "none"
    assert found["table"] is None
