"""Llama4 and PhiMoE routing and attention facts, read under verify's toy config, and the
same from renamed copies (nothing keys on a model_type name)."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.scaffold.target import load_target


def test_phimoe_sparse_mixer():
    features = load_target("phimoe").features
    assert features.moe.router == "sparsemixer"
    assert features.moe.top_k == 2  # two chained picks, whatever num_experts_per_tok says
    assert features.moe.router_jitter == "router_jitter_noise"
    assert features.moe.weights_on == "output"
    assert features.attention.sliding_window == "all"  # the backbone's one mask is windowed


def test_llama4_text():
    features = load_target("llama4_text").features
    moe, attention = features.moe, features.attention
    assert (moe.router, moe.score_func, moe.weights_on) == ("sigmoid_topk", "sigmoid", "input")
    assert (attention.qk_norm_weight, attention.qk_norm_layers) == (False, "rope")
    assert attention.chunked == "attention_chunk_size"
    assert attention.logn == {
        "beta": "hf_config.attn_scale",
        "period": "hf_config.floor_scale",
        "offset": 1.0,
        "positions": "index",
        "layers": "nope",
    }


def test_qwen3_moe_keeps_its_defaults():
    features = analyze("qwen3_moe")
    assert features.moe.weights_on == "output" and features.moe.router == "softmax_topk"
    assert features.attention.chunked is None
    assert (features.attention.qk_norm_weight, features.attention.qk_norm_layers) == (True, "all")


def test_renamed_copies(tmp_path):
    phimoe, _ = rename_model("phimoe", "zorblax", str(tmp_path / "a"))
    assert analyze(phimoe).moe.router == "sparsemixer"
    llama4, _ = rename_model("llama4", "quoll", str(tmp_path / "b"))
    features = analyze(llama4)
    assert features.moe.weights_on == "input"
    assert features.attention.qk_norm_weight is False
