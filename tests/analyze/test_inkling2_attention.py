"""Inkling-2's text attention read from its structure: of the layer's three attention
modules (learned queries over stored block outputs, and the attention over the tokens) the
one projecting the tokens is the attention; its short convolutions divide their residual sums
by sqrt(kernel + 1); its values are normed per head after a convolution over the flat
projection; the vision tower's rotation is no position table of the text model."""

from __future__ import annotations

from pathlib import Path

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


def test_no_part_is_named(features):
    """The full-attention layers' own forward is read against the sliding layers' (the
    facts above), its input-dependent convolutions too (`attention.layer_kv_convs`)."""
    named = {u.feature: u.detail for u in features.unsupported}
    assert "attention.layer_forwards" not in named
    assert features.attention.layer_kv_convs["divisor"] == "math.sqrt(2 * kernel + 1)"
    # the block attention residuals: read as the attention before, now depth mixers beside
    # it (block.attention_residuals), the full layers' three-query form too
    assert "attention.unprojected" not in named
    assert "block.layer_modules" not in named


def test_the_gate_takes_its_sigmoid_in_fp32(features):
    assert features.attention.gate_fp32 is True


def test_the_l2_clips_are_read_from_the_clip_forwards(features):
    """q and the relative states after a learned (heads, width) scale, k without one, each
    to the threshold its constructor reads from the config, in fp32; none stays named."""
    qk, rel = "hf_config.qk_l2_clip_threshold", "hf_config.rel_l2_clip_threshold"
    read = {"eps": 1e-6, "fp32": True}
    assert features.attention.l2_clips == {
        "q": {"module": "q_l2_clip", "scale": "scale", "threshold": qk, "value": 2**4.5, **read},
        "k": {"module": "k_l2_clip", "scale": None, "threshold": qk, "value": 2**4.5, **read},
        "rel": {"module": "rel_l2_clip", "scale": "scale", "threshold": rel, "value": 8.0, **read},
    }
    named = {u.feature for u in features.unsupported}
    assert "attention.qkv_modules" not in named and "attention.l2_clips" not in named


def test_the_sinks_are_projected_from_each_tokens_input(features):
    assert features.attention.sinks == "per_token"
    assert features.attention.sink_projection == "sink_proj"
    assert "attention.sinks" not in {u.feature for u in features.unsupported}


def test_the_head_softcaps_its_logits_through_a_module(features):
    """`logits = self.logit_softcap(logits)`: a module whose forward takes the tanh."""
    assert features.head.logit_softcap is True
    assert features.evidence["head.logit_softcap"].split(":")[1].startswith("1389")


def _edited(tmp_path, old: str, new: str):
    """The renamed inkling2 text decoder with `old` replaced by `new` in its modeling file."""
    modeling, _ = rename_model("inkling2_text", "wombat", str(tmp_path))
    source = Path(modeling).read_text()
    assert source.count(old) >= 1, old
    Path(modeling).write_text(source.replace(old, new))
    return analyze(modeling)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the values clipped: no rule realises it
        (
            "        value_states = value_states.view(hidden_shape)\n",
            "        value_states = self.k_l2_clip(value_states.view(hidden_shape))\n",
        ),
        # a scale with one entry per channel, shared by the heads
        (
            "self.scale = nn.Parameter(torch.ones(num_heads, head_dim))",
            "self.scale = nn.Parameter(torch.ones(head_dim))",
        ),
    ],
)
def test_a_clip_of_another_form_is_named(tmp_path, old, new):
    features = _edited(tmp_path, old, new)
    assert features.attention.l2_clips == "other"
    assert "attention.l2_clips" in {u.feature for u in features.unsupported}


def test_sinks_from_another_input_are_named(tmp_path):
    features = _edited(
        tmp_path,
        "        sinks = self.sink_proj(hidden_states)\n",
        "        sinks = self.sink_proj(hidden_states * hidden_states)\n",
    )
    assert features.attention.sink_projection == "other"
    assert "attention.sink_projection" in {u.feature for u in features.unsupported}
