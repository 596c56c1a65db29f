"""block.hyper_connections: read from the layer's data flow. DeepSeek-V4's manifold-
constrained form (post twice a sigmoid, a Sinkhorn-normalised mix consumed transposed) and
HY-V4's (the streams added back unmixed, post a config magnitude times a sigmoid plus eps,
summed in fp32) are facts with the config fields, form and HF attributes the rule needs; a
plain residual layer has none."""

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
        "mix": "sinkhorn",
        "post_scale": 2,
        "post_eps": False,
        "write_fp32": False,
        "scale_init": 1.0,
        "pre_base_init": "zeros",
        "head_scale_init": 1.0,
        "head_base_init": "zeros",
        "norm_after": False,  # the flattened streams normed, then projected
        "head_norm_after": False,
    }
    assert features.evidence["block.hyper_connections"].startswith("modeling_deepseek_v4.py:")
    # the write-back weights are no residual scale, the modules no unknown layer parts
    assert features.block.residual_scale is False
    assert not [f for f in features.unsupported if f.feature == "block.layer_modules"]


def test_hy_v4_unmixed_form_is_read():
    pytest.importorskip("transformers.models.hy_v4")
    features = analyze("hy_v4")
    hyper = features.block.hyper_connections
    assert hyper is not None
    form = {k: hyper[k] for k in ("mix", "sinkhorn_iters", "post_scale", "post_eps", "write_fp32")}
    assert form == {
        "mix": None,
        "sinkhorn_iters": None,
        "post_scale": "hc_magnitude",
        "post_eps": True,
        "write_fp32": True,
    }
    assert hyper["layer"] == ("attn_hc", "ffn_hc") and hyper["streams"] == "hc_mult"
    # HF's init: scales of 0.01, pre's bias at -log(streams - 1)
    assert (hyper["scale_init"], hyper["pre_base_init"]) == (0.01, "minus_log")
    assert (hyper["head_scale_init"], hyper["head_base_init"]) == (0.01, "minus_log")
    # the projection of the raw streams scaled by their RMS factor, in both modules
    assert (hyper["norm_after"], hyper["head_norm_after"]) == (True, True)
    assert features.block.residual_scale is False
    assert not [f for f in features.unsupported if f.feature == "block.layer_modules"]


def test_plain_residual_layers_have_none():
    assert analyze("llama").block.hyper_connections is None
