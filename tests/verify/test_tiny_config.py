"""Toy configs stay small and keep every structural feature switched on."""

from __future__ import annotations

import pytest

from codegen.errors import CodegenError
from codegen.verify.tiny_config import MIN_ROTARY_DIMS, SEQ_LEN, shrink, tiny_config


def test_sizes_shrink_and_grouped_heads_stay_grouped():
    config = tiny_config("llama")
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (96, 4, 512)
    assert config.num_attention_heads == 4 and config.num_key_value_heads == 2


def test_sizes_are_asymmetric_like_real_checkpoints():
    """A port that derives head_dim, stacks experts in string order or skips the dtype
    rounding of sqrt(hidden) must see a different toy than it assumes."""
    import torch

    config = tiny_config("llama")
    assert config.head_dim != config.hidden_size // config.num_attention_heads
    assert config.intermediate_size % config.hidden_size != 0
    root = config.hidden_size**0.5
    assert torch.tensor(root, dtype=torch.bfloat16).item() != root
    moe = tiny_config("qwen3_moe")
    assert moe.num_experts >= 16 and sorted(map(str, range(moe.num_experts)))[2] == "10"
    mla = tiny_config("deepseek_v3")
    assert mla.qk_nope_head_dim + mla.qk_rope_head_dim != mla.v_head_dim


def test_multi_query_stays_multi_query():
    toy = shrink({"num_attention_heads": 32, "num_key_value_heads": 1}, keep_pattern=False)
    assert toy["num_key_value_heads"] == 1


def test_sliding_window_is_switched_on_and_shorter_than_the_sequence():
    config = tiny_config("qwen2")
    assert config.sliding_window < SEQ_LEN
    assert set(config.layer_types) == {"full_attention", "sliding_attention"}


def test_moe_keeps_routing_shared_experts_and_dense_layers():
    config = tiny_config("deepseek_v3")
    assert config.n_routed_experts == 16 and config.num_experts_per_tok == 2
    assert config.n_shared_experts >= 1
    assert 0 < config.first_k_dense_replace < config.num_hidden_layers
    assert config.topk_group < config.n_group
    qwen = tiny_config("qwen3_moe")
    assert qwen.mlp_only_layers and len(qwen.mlp_only_layers) < qwen.num_hidden_layers


def test_a_real_layer_pattern_is_kept_long_enough_to_hold_every_kind():
    pattern = ["sliding_attention"] * 5 + ["full_attention"]
    toy = shrink({"num_hidden_layers": 48, "layer_types": pattern * 8}, keep_pattern=True)
    assert toy["num_hidden_layers"] == 6
    assert toy["layer_types"] == pattern


def test_rope_original_context_is_shorter_than_the_sequence():
    rope = {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096}
    toy = shrink({"rope_parameters": rope, "max_position_embeddings": 163840}, keep_pattern=False)
    assert toy["rope_parameters"]["original_max_position_embeddings"] < SEQ_LEN
    assert toy["rope_parameters"]["factor"] == 40.0


def test_rope_left_unset_by_a_per_layer_kind_class_gets_one_entry_per_kind():
    """A class whose default leaves `rope_parameters` empty but whose model indexes it by
    layer kind: every kind the toy or a window switch setting can have gets its own base."""
    toy = shrink(
        {"rope_parameters": {}, "layer_types": ["full_attention"] * 40, "num_hidden_layers": 40},
        keep_pattern=False,
    )
    rope = toy["rope_parameters"]
    assert set(rope) == {"full_attention", "sliding_attention"}
    assert all(entry["rope_type"] == "default" for entry in rope.values())
    assert rope["full_attention"]["rope_theta"] != rope["sliding_attention"]["rope_theta"]


def test_a_layer_pattern_the_class_leaves_unset_becomes_full_attention():
    """lfm2_moe's layers index `layer_types` but its class neither sets nor derives it."""
    toy = shrink({"num_hidden_layers": 32, "layer_types": None}, keep_pattern=False)
    assert toy["layer_types"] == ["full_attention"] * toy["num_hidden_layers"]
    assert tiny_config("lfm2_moe").layer_types == ["full_attention"] * 4


def test_nested_sub_model_configs_shrink_too():
    """A vision or audio tower the causal LM builds (phi4_multimodal) shrinks by the same
    rules; a nested dict that is no model config is left alone."""
    tower = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27}
    toy = shrink({"hidden_size": 3072, "vision_config": tower, "other": {"a": 1000}}, False)
    assert toy["vision_config"] == {
        "hidden_size": 96,
        "intermediate_size": 160,
        "num_hidden_layers": 4,
    }
    assert toy["other"] == {"a": 1000}


def test_a_per_layer_copy_of_a_shrunk_size_takes_the_toy_size():
    """laguna's `num_attention_heads_per_layer` repeats the head count on every layer: the
    toy's layers get the toy's head count; a list of other values is only cut."""
    toy = shrink(
        {
            "num_hidden_layers": 40,
            "num_attention_heads": 48,
            "num_attention_heads_per_layer": [48] * 40,
            "num_experts_per_layer": [7] * 40,
        },
        keep_pattern=False,
    )
    assert toy["num_attention_heads_per_layer"] == [4] * 4
    assert toy["num_experts_per_layer"] == [7] * 4


def test_unknown_model_type():
    with pytest.raises(CodegenError, match="no model_type 'not_a_model'"):
        tiny_config("not_a_model")


def test_other_per_layer_settings_follow_the_layer_count():
    toy = shrink(
        {
            "num_hidden_layers": 61,
            "mlp_layer_types": ["dense"] * 3 + ["sparse"] * 58,
            "per_layer_config": {"0": {"a": 1}, "7": {"a": 2}},
        },
        keep_pattern=False,
    )
    assert toy["mlp_layer_types"] == ["dense", "dense", "dense", "sparse"]
    assert toy["per_layer_config"] == {"0": {"a": 1}}


def test_a_run_length_pattern_under_a_renamed_layer_count_follows_it():
    """gpt_neo: `attention_types` [[pattern, repeats]] must expand to `num_layers` (its
    name for num_hidden_layers): the toy keeps the pattern's first layers."""
    toy = shrink(
        {"num_layers": 24, "attention_types": [[["global", "local"], 12]]},
        keep_pattern=False,
        attribute_map={"num_hidden_layers": "num_layers"},
    )
    assert toy["num_layers"] == 4
    assert toy["attention_types"] == [[["global", "local", "global", "local"], 1]]
    assert tiny_config("gpt_neo").attention_layers == ["global", "local", "global", "local"]


def test_embeddings_as_wide_as_the_hidden_states_stay_so():
    """OPT projects its embeddings in and out only where word_embed_proj_dim differs."""
    config = tiny_config("opt")
    assert config.word_embed_proj_dim == config.hidden_size


def test_a_config_with_fewer_layers_than_the_toy_keeps_its_own_count():
    """A 2-layer checkpoint: the toy cannot have 4 layers that its per-layer lists (layer
    types derived by the config class) do not cover."""
    pattern = ["full_attention", "full_attention"]
    toy = shrink({"num_hidden_layers": 2, "layer_types": pattern}, keep_pattern=True)
    assert toy["num_hidden_layers"] == 2 and toy["layer_types"] == pattern


def test_the_toy_keeps_head_dim_asymmetric_where_transformers_can_run_it():
    """helium declares head_dim but sizes o_proj from hidden: transformers cannot run an
    asymmetric head_dim there (nor can any real checkpoint), so its toy stays symmetric;
    llama's does not."""
    from codegen.verify.cases import base_config

    helium, fixed = base_config("helium")
    assert fixed and helium.head_dim == helium.hidden_size // helium.num_attention_heads
    llama, fixed = base_config("llama")
    assert not fixed and llama.head_dim != llama.hidden_size // llama.num_attention_heads


def test_an_absolute_rotary_dim_keeps_its_fraction_of_the_toy_head():
    """gptj rotates 64 of 256 head dims: the toy's head is 24, so a kept 64 would be wider
    than the head (and partial rotary would turn full); a quarter of 24 stays a quarter."""
    toy = shrink(
        {"n_embd": 4096, "n_head": 16, "rotary_dim": 64},
        keep_pattern=False,
        attribute_map={"hidden_size": "n_embd", "num_attention_heads": "n_head"},
    )
    assert toy["n_embd"] // toy["n_head"] == 24 and toy["rotary_dim"] == 6
    assert shrink({"rotary_dim": None}, keep_pattern=False)["rotary_dim"] is None
    assert tiny_config("gptj").rotary_dim == 6


def test_a_small_rotary_fraction_still_turns_two_pairs():
    """1/8 of a head rotates: the toy's head grows until that is at least MIN_ROTARY_DIMS (an
    even count), in each rope group; one turned dim could not tell two bases apart."""
    groups = {
        "main": {"rope_theta": 1e4, "partial_rotary_factor": 0.125},
        "compress": {"rope_theta": 1.6e5, "partial_rotary_factor": 0.125},
    }
    toy = shrink(
        {"head_dim": 512, "qk_rope_head_dim": 64, "rope_parameters": groups},
        keep_pattern=False,
    )
    assert toy["head_dim"] == 32 and "qk_rope_head_dim" not in toy  # the class derives it
    assert shrink({"head_dim": 128, "partial_rotary_factor": 0.5}, False)["head_dim"] == 40
    pytest.importorskip("transformers.models.deepseek_v4")
    assert tiny_config("deepseek_v4").qk_rope_head_dim == MIN_ROTARY_DIMS


def test_an_encoder_familys_causal_lm_is_built_as_a_decoder():
    """BERT-style configs declare is_decoder (default False: bidirectional attention); the
    toy sets it, configs without the field do not grow one."""
    assert tiny_config("megatron-bert").is_decoder is True
    assert "is_decoder" not in tiny_config("llama").to_dict()


def test_widths_of_different_modules_stay_distinct():
    """minimax_m3 sizes its dense MLP by `dense_intermediate_size`, its experts by
    `intermediate_size` and its shared expert by `shared_intermediate_size` (class defaults
    12288, 3072, 3072): each gets a toy width of its own, so a package reading one for
    another builds other shapes; a width of 0 (no shared expert) stays off."""
    toy = shrink(
        {
            "hidden_size": 6144,
            "intermediate_size": 3072,
            "dense_intermediate_size": 12288,
            "shared_intermediate_size": 3072,
            "intermediate_size_mlp": 16384,
            "moe_intermediate_size": 3072,
            "intermediate_multiple_size": 4,
        },
        keep_pattern=False,
    )
    widths = [toy[k] for k in toy if "intermediate_size" in k and k != "intermediate_multiple_size"]
    assert len(set(widths)) == len(widths) == 5
    assert all(w < 200 and w % 2 == 0 and w % 96 for w in widths)
    assert toy["intermediate_multiple_size"] == 4  # a multiple, not a width
    assert shrink({"shared_intermediate_size": 0}, False)["shared_intermediate_size"] == 0
    config = tiny_config("minimax_m3_vl_text")
    assert config.dense_intermediate_size != config.intermediate_size
    assert config.shared_intermediate_size not in (config.intermediate_size, 12288)


def test_a_field_the_class_derives_from_the_layer_count_is_derived_again(tmp_path):
    """hrm_text turns num_hidden_layers into num_layers_per_stack and recomputes the layer count
    as its cache's slot count: copying the full-size per-stack count (16) beside the toy's 4
    layers gave a model whose cache had 4 slots for 16 x 8 calls (IndexError in transformers)."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from codegen.verify.tiny_config import tiny_config_from_file

    config = tiny_config("hrm_text")
    cycles = config.H_cycles * (config.L_cycles + 1)
    assert config.num_layers_per_stack == 4  # the toy's layer count, per stack
    assert config.num_hidden_layers == config.num_layers_per_stack * cycles
    model = AutoModelForCausalLM.from_config(config)
    assert model(torch.tensor([[1, 2, 3, 4]])).logits.shape == (1, 4, config.vocab_size)
    # a real config.json (per-stack count and the derived total both written) shrinks the same
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "hrm_text", "num_hidden_layers": 24}))
    from_file = tiny_config_from_file(path)
    assert from_file.num_hidden_layers == from_file.num_layers_per_stack * cycles
    # classes without such a field keep their toy exactly
    assert tiny_config("llama").num_hidden_layers == 4


def test_block_sparse_attention_runs_as_full_and_a_language_is_chosen():
    """BigBird's toy runs its full-attention setting (block_sparse is the switch setting
    packages refuse); X-MOD's toy has three languages and the second as its default, as a
    user must set one (a package running another language's adapter differs)."""
    assert tiny_config("big_bird").attention_type == "original_full"
    assert shrink({"attention_type": "relative_shift"}, keep_pattern=False)["attention_type"] == (
        "relative_shift"
    )
    xmod = tiny_config("xmod")
    assert len(xmod.languages) == 3
    assert xmod.default_language == list(xmod.languages)[1]


def test_a_latent_layers_whole_head_stays_whole():
    """dots3's sliding layers override the latent sizes, and their head_dim (not written
    out: the config's 256) is the whole q/k head, 192 + 64, which the config class checks.
    The toy's head_dim is MLA's rotated part, so the layer now overrides it: its
    qk_nope_head_dim shrunk in ratio plus the toy's rotated part."""
    toy = shrink(
        {
            "num_hidden_layers": 46,
            "num_attention_heads": 128,
            "head_dim": 256,
            "qk_nope_head_dim": 128,
            "qk_rope_head_dim": 64,
            "kv_lora_rank": 512,
            "per_layer_config": {"2": {"num_attention_heads": 64, "qk_nope_head_dim": 192}},
        },
        keep_pattern=False,
    )
    assert toy["head_dim"] == 8 and toy["qk_nope_head_dim"] == 16
    assert toy["per_layer_config"]["2"] == {
        "num_attention_heads": 2,
        "qk_nope_head_dim": 24,
        "head_dim": 24 + 8,
    }
    config = tiny_config("dots3_note_text")  # its class accepts the toy
    sliding = config.per_layer_config[config.layer_types.index("sliding_attention")]
    assert sliding.head_dim == sliding.qk_nope_head_dim + sliding.qk_rope_head_dim


def test_the_base_case_of_a_config_whose_layers_override_the_head_count():
    """dots3's layers override num_attention_heads, which its config then refuses to answer
    globally: the base case reads the config's own value."""
    from codegen.verify.cases import base_config

    toy, fixed = base_config("dots3_note_text")
    assert toy.to_dict()["num_attention_heads"] == 4
    assert fixed == {} or set(fixed) == {"head_dim"}


def test_a_toy_value_the_config_class_refuses_keeps_the_class_default():
    """zaya's config validates `num_experts_per_tok=1` only: the toy's top-2 goes back to
    the default, the rest of the toy stays; an override the class refuses still fails."""
    pytest.importorskip("transformers.models.zaya")
    config = tiny_config("zaya")
    assert config.num_experts_per_tok == 1
    assert (config.hidden_size, config.num_experts) == (96, 16)
    with pytest.raises(Exception, match="num_experts_per_tok"):
        tiny_config("zaya", num_experts_per_tok=2)


def test_an_experts_sub_config_takes_the_tables_expert_sizes():
    """An experts sub-config (DBRX's `ffn_config`: count, top-k and width under names of its
    own, no attribute_map) gets the toy's experts as every other MoE does, whatever the
    model is called: left at 4 experts, top-1, 3584 wide beside a 96-wide model, fp8
    rounding alone moved DBRX's logits to cosine 0.98 (`verify --fp8`)."""
    from codegen.verify.tiny_config import SHRINK_RULES

    experts = {"hidden_size": 6144, "ffn_hidden_size": 3584, "moe_num_experts": 4, "moe_top_k": 1}
    config = {"model_type": "zephyrine", "d_model": 6144, "ffn_config": experts}
    toy = shrink(config, keep_pattern=False)["ffn_config"]
    assert toy["moe_num_experts"] == SHRINK_RULES["num_experts"]
    assert toy["moe_top_k"] == SHRINK_RULES["num_experts_per_tok"]
    assert toy["ffn_hidden_size"] == SHRINK_RULES["moe_intermediate_size"]
    # a sub-config without those fields does not gain them
    plain = shrink({"ffn_config": {"hidden_size": 6144}}, keep_pattern=False)["ffn_config"]
    assert set(plain) == {"hidden_size"}


@pytest.mark.parametrize(
    "model_type, field",
    [
        ("opt", "ffn_dim"),
        ("xglm", "ffn_dim"),
        ("moshi", "ffn_dim"),  # its fused [gate | up]: 22528 made verify take ~50 s
        ("falcon", "ffn_hidden_size"),
        ("ctrl", "dff"),
        ("whisper", "decoder_ffn_dim"),
    ],
)
def test_ffn_widths_under_other_names_shrink_too(model_type, field):
    """An FFN sized by a field named otherwise than `intermediate_size` gets a toy width as
    well: left full size it slowed the toy, and one that is a multiple of hidden (OPT's
    4 * hidden, whisper's 16 * hidden of the toy) hid a package sizing its FFN from hidden."""
    config = tiny_config(model_type)
    width = getattr(config, field)
    assert width < 200 and width % 2 == 0 and width % config.hidden_size


def test_ffn_widths_by_name_are_distinct_and_leave_ratios_and_unset_widths_alone():
    """Each width field gets a width of its own (an encoder's and a decoder's too); a ratio
    of a width (`block_ffn_dim_multiplier`) is no width, an unset one (GPT-2's `n_inner`:
    4 * hidden in the code) stays unset, and a width the table sizes under the class's own
    name (longcat_flash maps intermediate_size to `ffn_hidden_size`) keeps the table's."""
    toy = shrink(
        {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "encoder_ffn_dim": 4096,
            "decoder_ffn_dim": 4096,
            "block_ffn_dim_multiplier": 4,
            "n_inner": None,
        },
        keep_pattern=False,
    )
    widths = [toy[k] for k in ("intermediate_size", "encoder_ffn_dim", "decoder_ffn_dim")]
    assert len(set(widths)) == 3 and all(w % 96 for w in widths)
    assert toy["block_ffn_dim_multiplier"] == 4 and toy["n_inner"] is None
    assert tiny_config("gpt2").n_inner is None
    longcat = tiny_config("longcat_flash")
    assert (longcat.ffn_hidden_size, longcat.expert_ffn_hidden_size) == (160, 40)
