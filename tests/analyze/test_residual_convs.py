"""Residual short convolutions (`attention.kv_convs`, `block.output_convs`) and a word
table's own norm (`embedding.norm` with `norm_module`), read from inkling's structure and
from a renamed copy; models without them read none (LFM2's gated short convolution is
`block.short_conv`'s)."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

pytest.importorskip("transformers.models.inkling")

KV = {
    "convs": (("k_sconv", "k_proj"), ("v_sconv", "v_proj")),
    "conv": "conv1d",
    "kernel": 4,
    "kernel_field": "conv_kernel_size",  # the attention reads it as its alias sconv_kernel_size
    "fp32": True,
    "divisor": None,  # the sum is not divided
}
OUTPUT = {**KV, "convs": (("attn_sconv", "attention"), ("mlp_sconv", "ffn"))}


@pytest.mark.parametrize("renamed", [False, True])
def test_inkling_reads_its_convolutions_and_table_norm(tmp_path, renamed):
    source = rename_model("inkling_text", "wombat", str(tmp_path))[0] if renamed else "inkling_text"
    features = analyze(source)
    assert features.attention.kv_convs == KV
    assert features.block.output_convs == OUTPUT
    assert features.embedding.norm is True
    assert features.embedding.norm_module == "model.embed_tokens.embed_norm"
    assert features.norm.final is True  # the final norm stays the final norm
    unsupported = {u.feature for u in features.unsupported}
    assert not unsupported & {
        "attention.convolutions",
        "block.layer_modules",
        "embedding.table_forward",
    }
    assert features.evidence["attention.kv_convs"].endswith(":209")


@pytest.mark.parametrize("model_type", ["llama", "lfm2", "qwen3_moe", "bloom"])
def test_models_without_them_read_none(model_type):
    features = analyze(model_type)
    assert features.attention.kv_convs is None
    assert features.block.output_convs is None
    assert features.ffn.output_gain is None
