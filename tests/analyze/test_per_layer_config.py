"""A heterogeneous config (PreTrainedConfig's `per_layer_config`: gemma4's full-attention
layers with a head_dim of their own) is read per layer: `config.per_layer_config[i]` is layer
i's overrides over the config, so the q/k norm's width is the head size (per head, not
unknown), and the layers' differing projection sizes are named, not missed."""

from __future__ import annotations

from codegen.analyze.analysis import analyze


def test_gemma4_text_attention_reads_its_layer_config():
    features = analyze("gemma4_text")
    assert features.attention.qk_norm == "per_head"
    assert features.attention.head_dim == 256  # layer 0 slides: no override
    assert "attention.qk_norm" not in features.reference.unknown


def test_layers_with_their_own_head_dim_are_named():
    features = analyze("gemma4_unified_text")
    (shapes,) = [u for u in features.unsupported if u.feature == "attention.layer_shapes"]
    assert "layer 5" in shapes.detail and shapes.evidence.startswith("modeling_gemma4_unified.py:")
    assert not features.reference.unknown
