"""A routed MoE a bool switch runs beside the dense MLP (gemma4's enable_moe_block) is read
from the code with the switch on, although the analysed config leaves it off: the layer's
wiring (router on the residual sum, experts on their own pre-norm, both branches post-normed
and summed), the router's form and the fused experts, with the config fields of the sizes.
A renamed copy with renamed modules and switch reads the same structure under its names;
a decoder without such a switch, a MoE and a gemma without it read none."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

EXPECTED = {
    "field": "enable_moe_block",
    "router": "router",
    "experts": "experts",
    "moe_norm": "pre_feedforward_layernorm_2",
    "post_dense_norm": "post_feedforward_layernorm_1",
    "post_moe_norm": "post_feedforward_layernorm_2",
    "post_ffn_norm": "post_feedforward_layernorm",
    "router_norm": "norm",
    "router_proj": "proj",
    "router_scale": "scale",
    "expert_scale": "per_expert_scale",
    "gate_up": "gate_up_proj",
    "down": "down_proj",
    "activation": "gelu_pytorch_tanh",
    "fields": {
        "num_experts": "num_experts",
        "top_k": "top_k_experts",
        "moe_hidden": "moe_intermediate_size",
    },
}


def test_gemma4_reads_the_switched_moe_with_evidence():
    features = analyze("gemma4_text")
    assert features.block.parallel_moe == EXPECTED
    evidence = features.evidence["block.parallel_moe"]
    assert evidence.startswith("modeling_gemma4.py:") and "enable_moe_block" in evidence
    assert features.moe is None  # as configured (the switch off), the layers are dense
    assert "block.parallel_moe" not in features.reference.delta


def test_renamed_copy_with_renamed_modules_reads_the_same_structure(tmp_path):
    path, _ = rename_model("gemma4_text", "quokka", str(tmp_path))
    source = open(path, encoding="utf-8").read()
    renames = {
        "per_expert_scale": "slot_gain",
        "pre_feedforward_layernorm_2": "branch_in_norm",
        "post_feedforward_layernorm_1": "dense_out_norm",
        "post_feedforward_layernorm_2": "branch_out_norm",
        "self.router": "self.chooser",
        "self.experts": "self.bank",
        "gate_up_proj": "w_in",
        "enable_moe_block": "use_bank",
    }
    for old, new in renames.items():
        assert old in source
        source = source.replace(old, new)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    config = path.replace("modeling_", "configuration_")
    text = open(config, encoding="utf-8").read().replace("enable_moe_block", "use_bank")
    with open(config, "w", encoding="utf-8") as fh:
        fh.write(text)
    found = analyze(path).block.parallel_moe
    assert found == {
        **EXPECTED,
        "field": "use_bank",
        "router": "chooser",
        "experts": "bank",
        "moe_norm": "branch_in_norm",
        "post_dense_norm": "dense_out_norm",
        "post_moe_norm": "branch_out_norm",
        "expert_scale": "slot_gain",
        "gate_up": "w_in",
    }


def test_models_without_such_a_switch_read_none():
    for model_type in ("llama", "qwen3_moe", "gemma3_text", "gemma4_unified_text"):
        assert analyze(model_type).block.parallel_moe is None, model_type


def test_config_with_the_switch_on_reads_the_same_layer(tmp_path):
    """A real MoE checkpoint's config.json sets the switch (Gemma 4 26B-A4B): the layer holding
    its router and experts beside its attention is still the decoder layer, the FFN's
    post-norm is the one on the branches' sum, and the per-layer norm keeps its name."""
    import json

    from codegen.verify.remote_fixture import toy_config_dict

    values = {**toy_config_dict("gemma4_text"), "enable_moe_block": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    features = analyze("gemma4_text", str(path))
    assert features.category == "decoder"
    assert features.block.parallel_moe == EXPECTED
    assert dict(features.norm.block_names)["post_ffn_norm"] == "post_feedforward_layernorm"
    assert features.block.per_layer_input["norm"] == "post_per_layer_input_norm"
    assert features.unsupported == ()
