"""A compressor of the attention's own that pools windows of tokens into key/value entries
(DeepSeek-V4's heavily compressed layers) is the fact `attention.compressed_kv`, read from
structure (two unbiased projections to the head size, the one the fp32 softmax reads being
the gate, a learned (rate, head size) bias, the rate read per layer kind from the config, a
weighted norm, the rope_parameters label of its rotary) on a renamed copy, cited at the
compressor's call and the softmax; the indexed (CSA) compressor beside it is read as its
`sparse` kind, and alone (no heavily compressed layer) is another form, which no rule
realises."""

from __future__ import annotations

import linecache

import pytest

from codegen.analyze.analysis import analyze
from codegen.verify.remote_fixture import remote_folder

pytest.importorskip("transformers.models.deepseek_v4")

SLIDING, POOLED = "sliding_attention", "heavily_compressed_attention"
SPARSE = "compressed_sparse_attention"


def _analysed(tmp_path, name: str, kinds: list[str]):
    values = {"layer_types": kinds, "num_hidden_layers": len(kinds)}
    folder = remote_folder("deepseek_v4", tmp_path, name=name, config_values=values)
    return folder, analyze(str(folder), str(folder / "config.json"))


def test_pooled_compressor_is_read_with_its_parts(tmp_path):
    folder, features = _analysed(tmp_path, "poolwick", [SLIDING, POOLED, SLIDING, POOLED])
    assert features.attention.compressed_kv == {
        "module": "compressor",
        "kv": "kv_proj",
        "gate": "gate_proj",
        "bias": "position_bias",
        "norm": "kv_norm",
        "rate": f'hf_config.compress_rates["{POOLED}"]',
        "eps": "rms_norm_eps",
        "group": "compress",
        "kind": POOLED,
        "layers": [1, 3],
    }
    assert not [u for u in features.unsupported if u.feature == "attention.compressed_kv"]
    evidence = features.evidence["attention.compressed_kv"]
    call, softmax = (part.split(" ", 1)[0] for part in evidence.split(", ", 1))
    lines = [
        linecache.getline(str(folder / s.split(":")[0]), int(s.split(":")[1]))
        for s in (call, softmax)
    ]
    assert "self.compressor(" in lines[0]
    assert "softmax(dim=2, dtype=torch.float32)" in lines[1]


def test_an_indexed_compressor_beside_it_is_read_as_its_sparse_kind(tmp_path):
    """The compressed sparse (CSA) compressor on layers of another type: projections to
    twice the head size (a half per window it pools), and an indexer read by its parts (its
    own pooling parts at its head size, its query projection from the attention's query
    latent, a per-head weight in a part of its own), cited at both softmaxes."""
    kinds = [SLIDING, POOLED, SLIDING, SPARSE]
    folder, features = _analysed(tmp_path, "poolwock", kinds)
    sparse = features.attention.compressed_kv["sparse"]
    assert sparse == {
        "kv": "kv_proj",
        "gate": "gate_proj",
        "bias": "position_bias",
        "norm": "kv_norm",
        "rate": f'hf_config.compress_rates["{SPARSE}"]',
        "eps": "rms_norm_eps",
        "group": "compress",
        "indexer": {
            "module": "indexer",
            "kv": "kv_proj",
            "gate": "gate_proj",
            "bias": "position_bias",
            "norm": "kv_norm",
            "rate": f'hf_config.compress_rates["{SPARSE}"]',
            "q": "q_b_proj",
            "weights": "scorer.weights_proj",
            "heads": "hf_config.index_n_heads",
            "head_dim": "hf_config.index_head_dim",
            "topk": "hf_config.index_topk",
        },
        "kind": SPARSE,
        "layers": [3],
    }
    assert features.attention.compressed_kv["layers"] == [1]
    assert not [u for u in features.unsupported if u.feature == "attention.compressed_kv"]
    evidence = features.evidence["attention.compressed_kv"]
    sites = [part.split(" ", 1)[0] for part in evidence.replace("; ", ", ").split(", ")]
    lines = [linecache.getline(str(folder / s.split(":")[0]), int(s.split(":")[1])) for s in sites]
    assert sum("softmax(dim=2, dtype=torch.float32)" in line for line in lines) == 2, lines


def test_an_indexed_compressor_alone_is_another_form(tmp_path):
    _, features = _analysed(tmp_path, "poolwuck", [SLIDING, SPARSE, SLIDING, SPARSE])
    assert features.attention.compressed_kv.startswith("the keys and values are extended")
    (finding,) = [u for u in features.unsupported if u.feature == "attention.compressed_kv"]
    assert "with an indexer picking entries by top-k" in finding.detail
