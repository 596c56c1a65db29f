"""A fused q/k/v output's row layout is read from the shapes it is viewed as, never silently
the plain [q | k | v]: codegen's `x.shape[:-1] + (4, -1)` is 4 blocks of [q | v | k] (the
order from which split part reaches the kernel's q, k and v), gpt_neox_japanese's
`x.size()[:-1] + (heads, 3 * d)` per-head triples."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize(
    ("model_type", "layout"),
    [
        ("codegen", "blocked"),
        ("gpt_neox_japanese", "interleaved"),
        ("phi3", "contiguous"),
        ("falcon", "contiguous"),
        ("bloom", "interleaved"),
    ],
)
def test_layout(model_type, layout):
    assert analyze(model_type).attention.qkv_layout == layout


def test_codegen_blocks():
    attention = analyze("codegen").attention
    assert (attention.qkv_blocks, attention.qkv_order) == (4, "qvk")
