"""The config settings that exercise every config switch, built with the real transformers
config classes (issue 8 / issue 12): the switches come from the static analysis of the
installed modeling source, the toy from verify's own shrink rules."""

from __future__ import annotations

import json

import pytest

from codegen.analyze.analysis import analyze
from codegen.verify.switch_settings import (
    Setting,
    plan_settings,
    static_switches,
    switch_settings,
)
from codegen.verify.tiny_config import _names, hf_config_class, shrink

MODELS = [
    "llama",
    "qwen2",
    "qwen3_moe",
    "deepseek_v2",
    "deepseek_v3",
    "stablelm",
    "phi3",
    "olmo",
    "olmoe",
    "cohere",
    "gpt_neox",
    "glm4_moe",
    "gemma2",
    "mixtral",
]


def _toy(model_type: str, **overrides) -> dict:
    cls = hf_config_class(model_type)
    toy = shrink(cls().to_dict(), keep_pattern=False, attribute_map=_names(cls))
    toy.update(overrides)
    return toy


def _by_label(settings: list[Setting]) -> dict[str, Setting]:
    return {s.label: s for s in settings}


def _config(model_type: str, toy: dict, setting: Setting | None = None):
    overrides = setting.overrides if setting is not None else {}
    return hf_config_class(model_type)(**{**toy, **overrides})


def _plain(cfg) -> str:
    data = cfg.to_dict()
    data.pop("transformers_version", None)
    return json.dumps(data, sort_keys=True, default=repr)


@pytest.mark.parametrize("model_type", MODELS)
def test_every_setting_builds_differs_and_is_in_its_value_class(model_type) -> None:
    toy = _toy(model_type)
    plan = plan_settings(model_type, toy)
    base = _plain(_config(model_type, toy))
    labels = [s.label for s in plan.settings]
    assert len(labels) == len(set(labels))
    overrides = [json.dumps(s.overrides, sort_keys=True) for s in plan.settings]
    assert len(overrides) == len(set(overrides))
    names = {s.name for s in static_switches(model_type)}
    for setting in plan.settings:
        assert setting.field in names
        assert setting.evidence  # file:line of the branch it exercises
        cfg = _config(model_type, toy, setting)
        assert _plain(cfg) != base, setting.label
    for dropped in plan.dropped:
        assert dropped.reason


def test_mla_without_q_lora_and_back() -> None:
    """DeepSeek-V3's toy has q-LoRA (32): the setting without it is q_lora_rank=None; a toy
    without it gets a set value from verify's shrink rule, not the class default (1536)."""
    settings = _by_label(switch_settings("deepseek_v3", _toy("deepseek_v3")))
    assert settings["q_lora_rank=None"].overrides == {"q_lora_rank": None}
    assert "direct q projection" in settings["q_lora_rank=None"].selects
    assert "tie_word_embeddings=True" in settings
    without = _by_label(switch_settings("deepseek_v3", _toy("deepseek_v3", q_lora_rank=None)))
    assert without["q_lora_rank=32"].overrides == {"q_lora_rank": 32}
    assert "q_lora_rank=None" not in without  # the base already is


def test_partial_rotary_factor_on_each_side_of_one() -> None:
    toy = _toy("phi3")
    setting = _by_label(switch_settings("phi3", toy))["partial_rotary_factor=0.5"]
    rope = setting.overrides["rope_parameters"]
    assert rope["partial_rotary_factor"] == 0.5
    assert rope["rope_theta"] == toy["rope_parameters"]["rope_theta"]  # the rest is kept
    assert _config("phi3", toy, setting).rope_parameters["partial_rotary_factor"] == 0.5
    # stablelm's class default is 0.25 (< 1): the setting is the other side, 1.0
    stable = _by_label(switch_settings("stablelm", _toy("stablelm")))
    assert stable["partial_rotary_factor=1.0"].value == ">= 1"


def test_moe_layer_switches() -> None:
    toy = _toy("qwen3_moe")
    assert toy["mlp_only_layers"] == [0]
    settings = _by_label(switch_settings("qwen3_moe", toy))
    assert settings["mlp_only_layers=[]"].overrides == {"mlp_only_layers": []}
    assert settings["decoder_sparse_step=2"].value == "> 1"
    assert settings["norm_topk_prob=True"].overrides == {"norm_topk_prob": True}
    # the toy names the expert count under the attribute_map alias too: both are set
    zero = settings["num_experts=0"]
    assert _config("qwen3_moe", toy, zero).num_experts == 0
    empty = _by_label(switch_settings("qwen3_moe", _toy("qwen3_moe", mlp_only_layers=[])))
    assert empty["mlp_only_layers=[3]"].value == "non-empty"


def test_strings_compared_and_no_other_without_else() -> None:
    settings = switch_settings("deepseek_v2", _toy("deepseek_v2"))
    topk = [s for s in settings if s.field == "topk_method"]
    assert [s.overrides for s in topk] == [{"topk_method": "group_limited_greedy"}]
    plan = plan_settings("deepseek_v2", _toy("deepseek_v2"))
    # rope_type != "default" looks the type up in ROPE_INIT_FUNCTIONS: not invented
    assert any("ROPE_INIT_FUNCTIONS" in d.reason for d in plan.dropped)
    assert not any(s.field.endswith("rope_type") for s in plan.settings)


def test_a_kind_on_every_layer_gets_layers_of_the_kind_the_source_leaves() -> None:
    """minimax_m3 builds a MoE block where `mlp_layer_types[i] == "sparse"`, a dense MLP
    otherwise; its toy is sparse on every layer, so a setting puts the other kind
    transformers allows in the field ("dense") on the odd layers."""
    settings = _by_label(switch_settings("minimax_m3_vl_text", _toy("minimax_m3_vl_text")))
    mixed = settings["mlp_layer_types=['sparse' on even layers]"]
    assert mixed.overrides == {"mlp_layer_types": ["sparse", "dense", "sparse", "dense"]}
    # a pattern the toy already mixes is left as it was
    toy = _toy("minimax_m3_vl_text", mlp_layer_types=["dense", "sparse", "sparse", "sparse"])
    assert not [s for s in switch_settings("minimax_m3_vl_text", toy) if "mlp_layer" in s.field]


def test_sliding_window_switches() -> None:
    on = _by_label(switch_settings("qwen2", _toy("qwen2")))
    assert "use_sliding_window=False" in on and "sliding_window=None" in on
    off_toy = _toy("qwen2", use_sliding_window=False)
    plan = plan_settings("qwen2", off_toy)
    off = _by_label(plan.settings)
    assert "use_sliding_window=True" in off
    mixed = off["layer_types=['sliding_attention' on even layers]"]
    assert _config("qwen2", off_toy, mixed).layer_types[0] == "sliding_attention"
    # a window without use_sliding_window is turned off by the class: left out, with why
    (window,) = [d for d in plan.dropped if d.label == "sliding_window=8"]
    assert "sliding_window=None" in window.reason


def test_clip_set_and_unset() -> None:
    unset = _by_label(switch_settings("olmo", _toy("olmo", clip_qkv=None)))
    (clip,) = [s for s in unset.values() if s.field == "clip_qkv"]
    assert isinstance(clip.overrides["clip_qkv"], float) and clip.overrides["clip_qkv"] > 0
    clipped = _by_label(switch_settings("olmo", _toy("olmo", clip_qkv=0.5)))
    assert clipped["clip_qkv=None"].overrides == {"clip_qkv": None}


def test_a_width_equal_to_another_field_and_not() -> None:
    """OPT builds project_in / project_out where word_embed_proj_dim != hidden_size: the
    toy (equal) covers one side, a setting of twice hidden_size the other."""
    toy = _toy("opt")
    assert toy["word_embed_proj_dim"] == toy["hidden_size"]
    plan = plan_settings("opt", toy)
    assert "word_embed_proj_dim == hidden_size" in plan.covered
    (wider,) = [s for s in plan.settings if s.field == "word_embed_proj_dim"]
    assert wider.value == "!= hidden_size"
    assert wider.overrides["word_embed_proj_dim"] == 2 * toy["hidden_size"]


def test_settings_the_config_class_refuses_are_dropped_with_the_reason() -> None:
    plan = plan_settings("gemma2", _toy("gemma2"))
    (head,) = [d for d in plan.dropped if d.label == "head_dim=None"]
    assert "head_dim" in head.reason and "Error" in head.reason  # strict dataclass validation
    llama = plan_settings("llama", _toy("llama"))
    (derived,) = [d for d in llama.dropped if d.label == "head_dim=None"]
    assert "turns it into head_dim=" in derived.reason  # the class derives it: never None
    assert not any(s.field == "head_dim" for s in llama.settings)


def test_features_or_model_type_give_the_same_settings() -> None:
    toy = _toy("stablelm")
    by_name = switch_settings("stablelm", toy)
    by_features = switch_settings(analyze("stablelm"), toy)
    assert by_name == by_features
    fields = {s.field for s in by_name}
    assert {"use_qkv_bias", "qk_layernorm", "use_parallel_residual"} <= fields
    by_switches = switch_settings(static_switches("stablelm"), toy, model_type="stablelm")
    assert by_switches == by_name


def test_only_settings_outside_the_base_are_emitted() -> None:
    toy = _toy("llama", attention_bias=True, mlp_bias=True, tie_word_embeddings=True)
    settings = _by_label(switch_settings("llama", toy))
    assert {"attention_bias=False", "mlp_bias=False", "tie_word_embeddings=False"} <= set(settings)
    assert not any(s.overrides.get("attention_bias") is True for s in settings.values())


def test_a_number_tested_for_truth_is_switched_off_with_zero_where_none_is_refused() -> None:
    """gemma4 builds its per-layer inputs under `if config.hidden_size_per_layer_input:`,
    which its config class types int: None is refused, 0 takes the same branch, so 0 is the
    setting. head_dim, read as `config.head_dim or hidden // heads` (a fallback, and a size
    elsewhere), gets no 0."""
    switch = next(
        s for s in static_switches("gemma4_text") if s.field == "hidden_size_per_layer_input"
    )
    (off,) = [v for v in switch.values if v.test == "none"]
    assert off.operand == 0
    head = next(s for s in static_switches("gemma4_text") if s.field == "head_dim")
    assert all(v.operand != 0 for v in head.values)
    plan = plan_settings("gemma4_text", _toy("gemma4_text"))
    settings = _by_label(plan.settings)
    assert settings["hidden_size_per_layer_input=0"].overrides == {"hidden_size_per_layer_input": 0}
    assert any(d.label == "hidden_size_per_layer_input=None" for d in plan.dropped)
    assert not any(label.startswith("head_dim=") for label in settings)


def test_a_count_of_shared_layers_gets_a_toy_that_takes_it() -> None:
    """gemma4's `kv_sharing_modes` returns early for `num_kv_shared_layers == 0`: the code
    after it is the other values' branch. Its 6-layer toy (one full-attention layer, last)
    takes no other count (checked where the property derives it), so the setting is the toy
    derived again with sharing on: the layer pattern doubled, its second half shared."""
    switch = next(s for s in static_switches("gemma4_text") if s.field == "num_kv_shared_layers")
    assert {v.test for v in switch.values} == {"eq", "other"}
    toy = _toy("gemma4_text")
    plan = plan_settings("gemma4_text", toy)
    (dropped,) = [d for d in plan.dropped if d.label == "num_kv_shared_layers=1"]
    assert "layer types" in dropped.reason
    setting = _by_label(plan.settings)["num_kv_shared_layers=6"]
    assert setting.overrides["num_hidden_layers"] == 12
    pattern = _config("gemma4_text", toy).layer_types
    cfg = _config("gemma4_text", toy, setting)
    assert cfg.layer_types == pattern * 2
    assert cfg.kv_sharing_modes[6:] == ["reuse"] * 6


def test_a_field_that_is_an_int_or_a_per_layer_list_gets_a_list() -> None:
    """hunyuan_v1_moe's `moe_topk if isinstance(moe_topk, int) else moe_topk[layer_idx]`: the
    sweep runs a list whose entries differ by layer, of one parity (an expert count of that
    form still splits over ep=2); the same form of `num_experts` is dropped, the config class
    types it int."""
    (switch,) = [s for s in static_switches("hunyuan_v1_moe") if s.field == "moe_topk"]
    assert switch.kind == "int_or_list"
    assert [v.test for v in switch.values] == ["scalar", "layer_values"]
    toy = _toy("hunyuan_v1_moe")
    assert toy["moe_topk"] == 2 and toy["num_hidden_layers"] == 4
    plan = plan_settings("hunyuan_v1_moe", toy)
    listed = _by_label(plan.settings)["moe_topk=[4, 2, 4, 2]"]
    assert listed.value == "per-layer list"
    assert _config("hunyuan_v1_moe", toy, listed).moe_topk == [4, 2, 4, 2]
    assert any(d.label == "num_experts=[14, 16, 14, 16]" for d in plan.dropped)
    assert "moe_topk int" in plan.covered


def test_a_number_list_a_zero_switches_gets_zeros_and_differing_entries() -> None:
    """granite_swa reads each layer's RoPE base from `layer_rope_theta` and skips the rotation
    where it is 0; the toy repeats one base. One setting puts 0 on the even layers and makes
    the others differ from each other (a package that reads one entry for all layers, or
    rotates a 0 layer, computes another model), one puts 0 on every layer."""
    toy = _toy("granite_swa")
    assert toy["num_hidden_layers"] == 4 and len(set(toy["layer_rope_theta"] or [0])) == 1
    settings = _by_label(switch_settings("granite_swa", toy))
    base = _config("granite_swa", toy).layer_rope_theta[0]
    mixed = settings["layer_rope_theta=[0 on even layers, the others differing]"]
    assert mixed.overrides == {"layer_rope_theta": [0.0, base, 0.0, 2 * base]}
    assert mixed.value == "layers 0"
    every = settings["layer_rope_theta=[0 on every layer]"]
    assert every.overrides == {"layer_rope_theta": [0.0] * 4}
