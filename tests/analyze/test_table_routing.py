"""`moe.table_routing`: DeepSeek-V4's hash layers pick their experts from a fixed table
indexed by the token ids (`tid2eid[input_ids]`), built per layer where
`config.mlp_layer_types[layer] == "hash_moe"`. Read from the structure (the router's trace,
the block's `__init__`), on a renamed copy as on the original: the table, its size's config
fields, the switch, the weights' scores; the router facts come from a top-k layer. A config
typing no layer hash_moe has no table routing; models without the form get none."""

from __future__ import annotations

import json
import linecache

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files

pytest.importorskip("transformers.models.deepseek_v4")

EXPECTED = {
    "layers": [0, 1, 2],
    "switch": "mlp_layer_types",
    "value": "hash_moe",
    "buffer": "tid2eid",
    "rows": "vocab_size",
    "cols": "num_experts_per_tok",
    "input": "input_ids",
    "activation": "sqrtsoftplus",
    "fp32": False,
    "scores_fp32": False,  # `score_fn(logits)` of the bf16 logits
    "renormalize": True,
    "eps": 1e-20,
    "scale": "routed_scaling_factor",
}


def _line(evidence: str) -> str:
    name, line = evidence.split(" ", 1)[0].split(":")
    modeling = model_type_files("deepseek_v4")[0]
    assert modeling.endswith(name)
    return linecache.getline(modeling, int(line))


def test_the_hash_layers_table_is_a_fact():
    features = analyze("deepseek_v4")
    assert features.moe.table_routing == EXPECTED
    assert "moe.table_routing" not in {u.feature for u in features.unsupported}
    evidence = features.evidence["moe.table_routing"]
    assert "self.tid2eid[input_ids" in _line(evidence)
    assert "mlp_layer_types[layer] == 'hash_moe'" in evidence
    # the router facts are the top-k layers' (layer 3 on), not the first (hash) layer's
    assert features.moe.router == "sigmoid_topk" and features.moe.top_k == 6
    assert features.moe.router_bias is True and features.moe.score_activation == "sqrtsoftplus"


def test_a_renamed_copy_reads_the_same(tmp_path):
    path, _ = rename_model("deepseek_v4", "zorblax", str(tmp_path))
    assert analyze(path).moe.table_routing == EXPECTED


def test_the_layers_follow_the_config_list(tmp_path):
    config = tmp_path / "config.json"
    types = ["moe", "hash_moe", "moe", "hash_moe"]
    config.write_text(
        json.dumps({"model_type": "deepseek_v4", "num_hidden_layers": 4, "mlp_layer_types": types})
    )
    assert analyze("deepseek_v4", str(config)).moe.table_routing["layers"] == [1, 3]
    config.write_text(
        json.dumps(
            {"model_type": "deepseek_v4", "num_hidden_layers": 2, "mlp_layer_types": ["moe"] * 2}
        )
    )
    features = analyze("deepseek_v4", str(config))
    assert features.moe.table_routing is None
    assert "moe.table_routing" not in {u.feature for u in features.unsupported}


@pytest.mark.parametrize("model_type", ["deepseek_v3", "qwen3_moe", "inkling_text"])
def test_models_without_a_table_get_none(model_type):
    assert analyze(model_type).moe.table_routing is None


def test_a_table_indexed_by_another_input_stays_unsupported(tmp_path):
    # the hash router looks its table up by an input the stack does not embed: not token ids
    path, _ = rename_model("deepseek_v4", "zorblax", str(tmp_path))
    source = open(path).read()
    lookup = "indices = self.tid2eid[input_ids.reshape(-1)].long()"
    signature = "self, hidden_states: torch.Tensor, input_ids: torch.Tensor\n"
    assert source.count(lookup) == source.count(signature) == 1
    source = source.replace(lookup, lookup.replace("input_ids", "bucket_ids"))
    source = source.replace(signature, signature.replace("input_ids", "bucket_ids"))
    with open(path, "w") as f:
        f.write(source)
    features = analyze(path)
    assert features.moe.table_routing is None
    assert "moe.table_picks" in {u.feature for u in features.unsupported}
