"""Short-conv layers (LFM2) read from the source: the layer kind a per-layer list selects,
the mixer's projections, gate part, kernel and bias fields; a renamed copy reads the same.
And the router whose sigmoid runs in the logits' dtype (LFM2-MoE)."""

from __future__ import annotations

import json

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.analyze.reference import delta

LFM2 = {
    "field": "layer_types",
    "layer_type": "conv",
    "module": "conv",
    "in_proj": "in_proj",
    "conv": "conv",
    "out_proj": "out_proj",
    "parts": 3,
    "post_gate": 1,
    "kernel": 3,
    "kernel_field": "conv_L_cache",
    "bias": False,
    "bias_field": "conv_bias",
}


def test_all_attention_config_still_finds_the_conv_layer_kind():
    features = analyze("lfm2")
    assert features.category == "decoder"
    assert features.block.short_conv == LFM2
    assert features.evidence["block.short_conv"].startswith("modeling_lfm2.py:")
    assert "block.short_conv" in delta(features, "qwen3")


def test_a_checkpoint_with_conv_layers_is_a_decoder_with_both_kinds(tmp_path):
    config = tmp_path / "config.json"
    types = ["conv", "full_attention", "conv", "full_attention"]
    config.write_text(
        json.dumps({"model_type": "lfm2", "num_hidden_layers": 4, "layer_types": types})
    )
    features = analyze("lfm2", str(config))
    assert features.category == "decoder"
    assert features.block.mixers == ("attention", "short_conv")
    assert features.block.short_conv == LFM2
    keys = features.state_dict.checkpoint_layer_keys
    assert any(k.startswith("conv.in_proj.weight") for k in keys)


def test_a_renamed_copy_with_renamed_projections_reads_the_same(tmp_path):
    path, _ = rename_model("lfm2", "zorblax", str(tmp_path))
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text.replace("in_proj", "w_in").replace("out_proj", "w_out"))
    found = analyze(path).block.short_conv
    assert found == {**LFM2, "in_proj": "w_in", "out_proj": "w_out"}


def test_attention_only_models_have_no_short_conv():
    assert analyze("qwen3").block.short_conv is None


@pytest.mark.parametrize(
    ("model_type", "fp32"),
    [("lfm2_moe", False), ("deepseek_v4", False), ("deepseek_v3", True), ("minimax_m2", True)],
)
def test_router_scores_dtype(model_type, fp32):
    """DeepSeek-V4 scores by `score_fn(logits)` (sqrtsoftplus) on its bf16 logits: half
    scores as LFM2-MoE's sigmoid; minimax_m2 upcasts its bf16 logits first."""
    features = analyze(model_type)
    assert features.moe.scores_fp32 is fp32
    if not fp32:  # the scores taken on the logits as they come out of the projection
        assert features.evidence["moe.scores_fp32"].startswith(f"modeling_{model_type}.py:")
        assert "moe.scores_fp32" in delta(features, "qwen3_moe")


def _copy_with(tmp_path, *edits: tuple[str, str]) -> str:
    path, _ = rename_model("lfm2", "zorblax", str(tmp_path))
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def test_a_kernel_passed_positionally_still_names_its_config_field(tmp_path):
    path = _copy_with(
        tmp_path,
        ("in_channels=config.hidden_size,", "config.hidden_size,"),
        ("out_channels=config.hidden_size,", "config.hidden_size,"),
        ("kernel_size=self.conv_kernel_size,", "self.conv_kernel_size,"),
    )
    assert analyze(path).block.short_conv == LFM2


def test_a_literal_kernel_is_the_kernel_and_reads_no_field(tmp_path):
    path = _copy_with(
        tmp_path, ("self.conv_kernel_size = config.conv_L_cache", "self.conv_kernel_size = 4")
    )
    found = analyze(path).block.short_conv
    assert found == {**LFM2, "kernel": 4, "kernel_field": None}


def test_projections_biased_otherwise_than_the_filter_are_not_this_mixer(tmp_path):
    # the package switches the filter's and the projections' biases together
    old = "self.in_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=self.bias)"
    path = _copy_with(tmp_path, (old, old.replace("bias=self.bias", "bias=False")))
    features = analyze(path)
    assert features.block.short_conv is None
