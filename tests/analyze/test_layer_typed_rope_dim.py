"""Partial rotary of a latent (MLA) attention whose rope parameters are keyed by layer types
that do not include "full_attention" (indexed and sliding layers only, dots3): the rotary
table's width is evaluated with the first rotated layer's own entry, so the fact is the
fraction of the whole q/k head that turns (rope part over nope + rope), as for DeepSeek-V2/V3,
and not the config factor, which is the rope part over a nominal head_dim."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze
from codegen.analyze.detect_rope import _table_layer_type

pytest.importorskip("transformers.models.dots3_note")


def test_table_layer_type_is_the_first_layers_own_where_full_is_absent():
    kinds = ["indexed_attention", "indexed_attention", "sliding_attention"]
    nested = {"indexed_attention": {}, "sliding_attention": {}}
    assert _table_layer_type(nested, kinds, 0) == "indexed_attention"
    assert _table_layer_type(nested, kinds, 2) == "sliding_attention"
    full = {"full_attention": {}, "sliding_attention": {}}
    assert _table_layer_type(full, ["sliding_attention", "full_attention"], 0) == "full_attention"
    assert _table_layer_type({}, kinds, 0) is None


def test_whole_head_fraction_under_the_real_config():
    features = analyze("dots3_note_text")
    # 64 rotated dims of a 128 + 64 q/k head; the config's factor is 64 / head_dim 256
    assert features.rope.partial_rotary == round(64 / 192, 6)
    assert "(rotary dim 64 of head dim 192)" in features.evidence["rope.partial_rotary"]


def test_renamed_copy_reports_the_whole_head_fraction(tmp_path):
    from codegen.scaffold.target import load_target
    from codegen.verify.remote_fixture import remote_folder

    folder = remote_folder("dots3_note_text", tmp_path, name="quillmark")
    target = load_target(str(folder), str(folder / "config.json"))
    toy = target.config
    rope, nope = toy["qk_rope_head_dim"], toy["qk_nope_head_dim"]
    assert toy["head_dim"] != rope + nope  # the factor and the whole-head fraction differ
    assert target.features.rope.partial_rotary == round(rope / (rope + nope), 6)
    evidence = target.features.evidence["rope.partial_rotary"]
    assert f"(rotary dim {rope} of head dim {rope + nope})" in evidence
