"""block.hyper_connections: read from the layer's data flow. DeepSeek-V4's manifold-
constrained form (post twice a sigmoid, a Sinkhorn-normalised mix consumed transposed) is a
fact with the config fields and HF attributes the rule needs; HY-V4's form (the streams added
back unmixed) is named unsupported with what differs; a plain residual layer has none."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze

pytest.importorskip("transformers.models.deepseek_v4")


def test_deepseek_v4_hyper_connections_are_read_whole():
    features = analyze("deepseek_v4")
    assert features.block.hyper_connections == {
        "params": ("fn", "base", "scale"),
        "streams": "hc_mult",
        "sinkhorn_iters": "hc_sinkhorn_iters",
        "eps": "hc_eps",
        "norm_eps": "rms_norm_eps",
        "layer": ("attn_hc", "ffn_hc"),
        "head": "hc_head",
        "head_params": ("hc_fn", "hc_base", "hc_scale"),
    }
    assert features.evidence["block.hyper_connections"].startswith("modeling_deepseek_v4.py:")
    # the write-back weights are no residual scale, the modules no unknown layer parts
    assert features.block.residual_scale is False
    assert not [f for f in features.unsupported if f.feature == "block.layer_modules"]


def test_hy_v4_other_form_is_named():
    pytest.importorskip("transformers.models.hy_v4")
    features = analyze("hy_v4")
    assert features.block.hyper_connections is None
    (finding,) = [f for f in features.unsupported if f.feature == "block.layer_modules"]
    assert "another form" in finding.detail and "HYV4HyperConnection" in finding.detail


def test_plain_residual_layers_have_none():
    assert analyze("llama").block.hyper_connections is None
