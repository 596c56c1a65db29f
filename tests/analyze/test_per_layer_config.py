"""A heterogeneous config (PreTrainedConfig's `per_layer_config`: gemma4's full-attention
layers with a head_dim of their own) is read per layer: `config.per_layer_config[i]` is layer
i's overrides over the config, so the q/k norm's width is the head size (per head, not
unknown), and a per-layer reading can see the layers' differing projection sizes."""

from __future__ import annotations

from codegen.analyze.analysis import analyze


def test_gemma4_text_attention_reads_its_layer_config():
    features = analyze("gemma4_text")
    assert features.attention.qk_norm == "per_head"
    assert features.attention.head_dim == 256  # layer 0 slides: no override
    assert "attention.qk_norm" not in features.reference.unknown


def test_layer_views_read_overrides_and_fall_back_to_the_config():
    from codegen.analyze.config import _per_layer_configs
    from codegen.analyze.evaluate import ConfigObj

    cfg = ConfigObj(None)
    cfg.attrs.update(head_dim=256, num_key_value_heads=4)
    views = _per_layer_configs(cfg, {5: {"head_dim": 512}})
    assert views[5].lookup("head_dim") == 512
    assert views[5].lookup("num_key_value_heads") == 4  # not overridden: the config's
    assert views[0] is cfg  # a layer without overrides reads the config itself
    from_json = _per_layer_configs(cfg, {"5": {"head_dim": 512}})  # config.json's keys
    assert from_json[5].lookup("head_dim") == 512


def test_unified_text_qk_norm_is_determined():
    features = analyze("gemma4_unified_text")
    assert features.attention.qk_norm == "per_head"
    assert not features.reference.unknown


def test_the_scaffold_toy_keeps_the_overrides():
    """The toy the scaffold analyses under is written from the config's values: the layer
    overrides stay plain dicts there, so the toy still has layer 5's own head size (the
    toy's head size in the config's ratio), which the analysis reads as sizes from the
    per-layer overrides."""
    from codegen.scaffold.target import load_target

    target = load_target("gemma4_unified_text")
    assert target.config["per_layer_config"] == {5: {"head_dim": 80}}  # shrunk with 512 / 256
    assert target.features.attention.layer_shapes == "per_layer_config"
    assert not target.features.unsupported


def test_renamed_copy_reads_the_same_layer_facts(tmp_path):
    """Nothing hangs on the architecture's name: a renamed copy of gemma4_unified's text
    model gives the per-layer sizes, the weightless value norm and the stored output scale."""
    from analyze_helpers import rename_model

    modeling, _ = rename_model("gemma4_unified", "quokka", str(tmp_path))
    features = analyze(modeling)
    assert features.attention.layer_shapes == "per_layer_config"
    assert (features.attention.v_norm, features.attention.v_norm_weight) == ("per_head", False)
    assert (features.block.output_scale, features.block.output_scale_trained) == (
        "layer_scalar",
        False,
    )
    assert features.norm.weight_fp32 is True  # `out * self.weight.float()`, cast last
    assert not features.unsupported


def test_shrunk_overrides_keep_layers_apart():
    from codegen.verify.tiny_config import resize_overrides

    original = {"head_dim": 256, "num_key_value_heads": 4, "num_attention_heads": 8}
    toy = {"head_dim": 40, "num_key_value_heads": 2, "num_attention_heads": 4}
    assert resize_overrides({"head_dim": 512}, original, toy) == {"head_dim": 80}
    assert resize_overrides({"head_dim": 256}, original, toy) == {"head_dim": 40}
    assert resize_overrides({"num_key_value_heads": 1}, original, toy) == {"num_key_value_heads": 1}
    assert resize_overrides({"sliding_window": 7}, original, toy) == {"sliding_window": 7}
