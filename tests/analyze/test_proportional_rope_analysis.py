"""A proportional rope is a known kind, and its partial factor is no partial rotary: the
table spans the whole head (the factor zeroes its tail), so no rule shrinks it."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize("model_type", ["lfm3", "gemma4_unified_text"])
def test_proportional_kind_turns_the_whole_head(model_type):
    features = analyze(model_type)
    assert features.rope.type == "proportional"
    assert features.rope.partial_rotary == 1.0
    assert "rope.partial_rotary" not in features.reference.delta
    assert not any(u.feature.startswith("rope.") for u in features.unsupported)
