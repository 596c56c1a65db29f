"""Which layers rotate: the guard around the rotation restated over the config.

NoPE layers are chosen in the source by a condition on attributes `__init__` computed from the
config and the layer index; `Features.rope.nope_rule` is that condition over `hf_config` and
`i`, whatever fields the config keeps it in, on renamed copies too. A guard that cannot be
restated (its attribute is reassigned) gives no rule, never a wrong one.
"""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

RULES = {
    "smollm3": "hf_config.no_rope_layers[i]",  # a per-layer 0/1 list in the config
    # RoPE only where the layer keeps a window: layer_types with sliding_window
    "cohere2": (
        '((hf_config.sliding_window if hf_config.layer_types[i] == "sliding_attention"'
        " else None) is not None)"
    ),
    # no window anywhere, or a sliding layer ("global NoPE" for hybrid attention)
    "exaone4": (
        "(hf_config.sliding_window is None or ((hf_config.layer_types[i]"
        ' if hasattr(hf_config, "layer_types") else None) == "sliding_attention"))'
    ),
}


@pytest.mark.parametrize("model_type", sorted(RULES))
def test_the_rotation_guard_is_restated_over_the_config(model_type: str) -> None:
    features = analyze(model_type)
    assert features.rope.nope_layers is True
    assert features.rope.nope_rule == RULES[model_type]


def test_a_renamed_copy_gives_the_same_rule(tmp_path) -> None:
    copy, _ = rename_model("exaone4", "zorblax", str(tmp_path))
    assert analyze(copy).rope.nope_rule == RULES["exaone4"]


def test_a_reassigned_attribute_gives_no_rule(tmp_path) -> None:
    """`self.is_sliding` set twice in `__init__`: its value depends on the path taken, so the
    guard is not restated (the plan then stops instead of guessing)."""
    copy, _ = rename_model("exaone4", "zorblax", str(tmp_path))
    with open(copy, encoding="utf-8") as fh:
        source = fh.read()
    anchor = '        self.is_sliding = layer_type == "sliding_attention"\n'
    assert source.count(anchor) == 1
    again = "        if layer_idx < 0:\n            self.is_sliding = True\n"
    source = source.replace(anchor, anchor + again)
    with open(copy, "w", encoding="utf-8") as fh:
        fh.write(source)
    features = analyze(copy)
    assert features.rope.nope_layers is True
    assert features.rope.nope_rule is None
