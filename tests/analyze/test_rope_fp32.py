"""`rope.fp32`: the RoPE function takes q to fp32 before turning it (cohere's
`q = q.float()`), found in whatever function the attention calls, under any names."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize(("model_type", "fp32"), [("cohere2_moe", True), ("llama", False)])
def test_rope_fp32(model_type, fp32):
    features = analyze(model_type)
    assert features.rope.fp32 is fp32
    if fp32:
        where = features.evidence["rope.fp32"].split(" ")[0]
        line = int(where.rsplit(":", 1)[1])
        source = open(features.source.modeling, encoding="utf-8").read().splitlines()
        assert "q.float()" in source[line - 1]


def test_renamed_copy_with_renamed_arguments(tmp_path):
    modeling, _ = rename_model("cohere2_moe", "zorblax", str(tmp_path))
    text = open(modeling, encoding="utf-8").read()
    old = "def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):"
    assert old in text
    text = text.replace(old, "def turn(query, key, cos, sin, unsqueeze_dim=1):")
    text = text.replace("q = q.float()", "query = query.to(torch.float32)")
    text = text.replace("k = k.float()", "key = key.float()")
    text = text.replace(
        "(q * cos) + (rotate_half(q) * sin)", "(query * cos) + (rotate_half(query) * sin)"
    )
    text = text.replace(
        "(k * cos) + (rotate_half(k) * sin)", "(key * cos) + (rotate_half(key) * sin)"
    )
    text = text.replace("apply_rotary_pos_emb(", "turn(")
    open(modeling, "w", encoding="utf-8").write(text)
    assert analyze(modeling).rope.fp32 is True


def test_the_turned_slice_taken_to_fp32():
    """DeepSeek-V4 turns only the trailing slice of x (`nope, rope = x[..., :-d], x[...,
    -d:]`) and takes that slice to fp32 (`rope.float() * cos`): the maths runs in fp32 on
    the tables rounded to x's dtype."""
    features = analyze("deepseek_v4")
    assert features.rope.fp32 is True
    assert features.rope.tables_fp32 is False
    line = int(features.evidence["rope.fp32"].split(" ")[0].rsplit(":", 1)[1])
    source = open(features.source.modeling, encoding="utf-8").read().splitlines()
    assert "rope.float()" in source[line - 1]
