"""A fused q/k/v output viewed as a shape none of whose sizes was evaluated is an unknown
row layout (codegen's 4 blocks of [q | v | k], gpt_neox_japanese's per-head triples), never
silently the plain [q | k | v]; layouts the shapes do spell stay read."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize(
    ("model_type", "layout"),
    [
        ("codegen", "unknown"),
        ("gpt_neox_japanese", "unknown"),
        ("phi3", "contiguous"),
        ("falcon", "contiguous"),
        ("bloom", "interleaved"),
    ],
)
def test_layout(model_type, layout):
    assert analyze(model_type).attention.qkv_layout == layout
