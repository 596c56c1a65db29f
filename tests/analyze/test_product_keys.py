"""ffn.product_keys: the product-key experts a bool switch puts in the MLP's place (doge's
is_moe -> DogeCDMoE), read from the layer instantiated with the switch flipped."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

DOGE = {
    "field": "is_moe",
    "router": "router_gate",
    "down": "down_embed",
    "up": "up_embed",
    "w1": "gate_proj",
    "w3": "up_proj",
    "w2": "down_proj",
    "experts": "num_experts",
    "top_k": "num_experts_per_tok",
    "renormalise": "norm_topk_prob",
}


def test_doge_is_moe_names_the_experts_parts() -> None:
    features = analyze("doge")
    assert features.ffn.product_keys == DOGE
    assert features.evidence["ffn.product_keys"].endswith("config:is_moe")


def test_a_renamed_copy_reads_the_same(tmp_path) -> None:
    copy_path, _ = rename_model("doge", "zorblax", str(tmp_path))
    assert analyze(copy_path).ffn.product_keys == DOGE


def test_other_switched_mlps_are_not_product_keys() -> None:
    # qwen3_moe's experts (a switch-free MoE), and a dense model
    assert analyze("qwen3_moe").ffn.product_keys is None
    assert analyze("llama").ffn.product_keys is None
