"""Inkling-2's text attention read from its structure: of the layer's three attention
modules (learned queries over stored block outputs, and the attention over the tokens) the
one projecting the tokens is the attention; its short convolutions divide their residual sums
by sqrt(kernel + 1); its values are normed per head after a convolution over the flat
projection; the vision tower's rotation is no position table of the text model."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

pytest.importorskip("transformers.models.inkling2")

DIVIDED = {
    "conv": "conv1d",
    "kernel": 4,
    "kernel_field": "conv_kernel_size",
    "fp32": True,
    "divisor": "math.sqrt(kernel + 1)",
}


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inkling2")
    return analyze(rename_model("inkling2_text", "wombat", str(folder))[0])


def test_the_attention_is_the_one_projecting_the_tokens(features):
    assert features.evidence["attention.kind"].split(":")[1].startswith("419 ")  # self_attn.k_proj
    assert features.attention.output_gate == "sigmoid"
    assert features.attention.rel_bias["states"] == "r_proj"
    # `_supports_sdpa = False`: HF adds the bias to its written-out (eager) scores
    assert features.attention.rel_bias["kernel"] == "eager"


def test_the_convolutions_divide_their_sums(features):
    convs = (("k_sconv", "k_proj"), ("v_sconv", "v_proj"))
    assert features.attention.kv_convs == {"convs": convs, **DIVIDED}
    outputs = (("post_attention_convolution", "attention"), ("post_mlp_convolution", "ffn"))
    assert features.block.output_convs == {"convs": outputs, **DIVIDED}


def test_the_values_are_normed_per_head_after_their_convolution(features):
    assert features.attention.v_norm == "per_head"
    assert features.attention.v_norm_weight is False
    assert "attention.v_norm" not in {u.feature for u in features.unsupported}


def test_a_rotation_the_text_model_never_builds_is_no_position_table(features):
    assert features.embedding.positions == "none"
    assert "embedding.positions" not in {u.feature for u in features.unsupported}


def test_parts_no_rule_builds_are_named(features):
    """Sink logits projected per token, the full-attention layers' own forward (its
    input-dependent convolutions, separate key/value inputs, log-scaled queries) and the
    three-query block attention residual are each one line: the facts above are read from
    the sliding layers' token attention."""
    named = {u.feature: u.detail for u in features.unsupported}
    assert features.attention.sinks == "per_token"
    assert "attention.sinks" in named
    assert "FullAttention on layers 5,11" in named["attention.layer_forwards"]
    # the block attention residuals: read as the attention before, now depth mixers beside
    # it (block.attention_residuals); the full layers' three-query form is the one named
    assert "attention.unprojected" not in named
    assert "attention_input (1 or 3 queries)" in named["block.layer_modules"]


def test_the_gate_takes_its_sigmoid_in_fp32(features):
    assert features.attention.gate_fp32 is True
