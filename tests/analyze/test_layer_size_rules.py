"""MiMo-V2-Flash's attention, read by structure: its sliding layers built with twice the kv
heads and with sinks (conditions of `__init__` restated over `hf_config` and the layer
index), value heads of a size of their own, values times a config factor. A renamed copy
reads the same; models sized alike, or sized by their per-layer overrides, read none."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

SLIDING = 'hf_config.layer_types[i] == "sliding_attention"'
KV_HEADS = f"hf_config.num_key_value_heads * 2 if ({SLIDING}) else hf_config.num_key_value_heads"
V_SCALE = "hf_config.attention_value_scale if hf_config.attention_value_scale is not None else 1.0"


def test_mimo_and_a_renamed_copy_read_the_rules(tmp_path):
    modeling, _ = rename_model("mimo_v2_flash", "wombat", str(tmp_path))
    for source in ("mimo_v2_flash", modeling):
        features = analyze(source)
        attention = features.attention
        assert attention.layer_shapes == "rule"
        assert attention.layer_sizes == {"n_kv_heads": KV_HEADS}
        assert attention.v_head_dim == "hf_config.v_head_dim"
        assert attention.v_scale == V_SCALE
        assert attention.sinks is True and attention.sink_rule == SLIDING
        assert not features.unsupported, features.unsupported
        # grouped-query attention: no latent (MLA) reference to start from, which no rule
        # turns into GQA, however few its other deltas
        assert features.reference.closest != "deepseek_v3"
        assert "attention.kind" not in features.reference.delta


def test_sizes_by_a_field_of_their_own_are_a_rule_too():
    # inkling's hybrid sliding layers read swa_num_key_value_heads
    attention = analyze("inkling_text").attention
    assert attention.layer_shapes == "rule"
    assert set(attention.layer_sizes) == {"n_kv_heads"}
    assert "hf_config.swa_num_key_value_heads" in attention.layer_sizes["n_kv_heads"]


def test_models_sized_alike_or_by_overrides_read_none():
    for model_type in ("llama", "qwen3", "gpt_oss", "granite_swa", "gemma4_unified_text"):
        attention = analyze(model_type).attention
        assert attention.layer_sizes is None
        assert attention.v_head_dim is None and attention.v_scale is None
        assert attention.sink_rule is None
    assert analyze("gpt_oss").attention.sinks is True  # on every layer: no rule
    assert analyze("gemma4_unified_text").attention.layer_shapes == "per_layer_config"


def test_conditions_not_restated_are_other_and_unsupported(tmp_path):
    """The same model with the sinks built in an `if` statement and the values' factor
    assigned twice: neither restates, so each is "other" and listed, and nothing is planned
    from a guess."""
    modeling, _ = rename_model("mimo_v2_flash", "wombat", str(tmp_path))
    with open(modeling) as f:
        source = f.read()
    sinks = "self.sinks = nn.Parameter(torch.empty(num_attention_heads)) if is_swa else None"
    scale = (
        "self.v_scale = config.attention_value_scale"
        " if config.attention_value_scale is not None else 1.0"
    )
    assert sinks in source and scale in source
    source = source.replace(
        sinks,
        "self.sinks = None\n        if is_swa:\n"
        "            self.sinks = nn.Parameter(torch.empty(num_attention_heads))",
    )
    source = source.replace(scale, scale + "\n        self.v_scale = self.v_scale * 1.0")
    with open(modeling, "w") as f:
        f.write(source)
    features = analyze(modeling)
    assert features.attention.sink_rule == "other"
    assert features.attention.v_scale == "other"
    listed = {u.feature for u in features.unsupported}
    assert {"attention.sink_rule", "attention.v_scale"} <= listed
