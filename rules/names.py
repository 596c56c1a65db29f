"""Naming tables: how the same weight and the same config value are called across models.

KEY_SYNONYMS groups the module names checkpoints use for one role; `align_hf_keys` pairs a
reference key with a target key when every dotted component belongs to the same group.
CONFIG_ALIASES lists, for a config field the references read, the other names configs use
for it (in preference order; the legacy names of `codegen.analyze.config.LEGACY_NAMES` come
after them); CONFIG_DERIVATIONS and CONFIG_FALLBACKS say what a missing field means.
"""

KEY_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("model", "transformer", "gpt_neox", "backbone"),
    ("layers", "h", "blocks", "layer"),
    ("self_attn", "attn", "attention", "self_attention"),
    ("mlp", "feed_forward", "block_sparse_moe", "ffn"),
    ("q_proj", "query", "wq", "q", "Wq"),
    ("k_proj", "key", "wk", "k", "Wk"),
    ("v_proj", "value", "wv", "v", "Wv"),
    ("o_proj", "dense", "out_proj", "wo", "o", "Wo"),
    ("qkv_proj", "query_key_value", "Wqkv", "c_attn", "wqkv"),
    ("gate_proj", "w1"),
    ("up_proj", "w3", "c_fc", "fc1", "fc_in", "dense_h_to_4h"),
    ("down_proj", "w2", "c_proj", "fc2", "fc_out", "dense_4h_to_h"),
    ("gate_up_proj", "w13", "fc1_gate_up", "Wi"),
    ("input_layernorm", "ln_1", "attention_norm", "self_attn_layer_norm", "attention_layernorm"),
    ("post_attention_layernorm", "ln_2", "ffn_norm", "feedforward_layernorm"),
    ("embed_tokens", "wte", "word_embeddings", "embed_in", "tok_embeddings"),
    # BERT-era checkpoints call every norm LayerNorm (roberta-prelayernorm's final one)
    ("norm", "ln_f", "final_layernorm", "norm_f", "final_layer_norm", "ln", "LayerNorm"),
    ("lm_head", "embed_out", "output"),
    ("router", "gate"),
    ("shared_experts", "shared_expert", "shared_mlp"),
    ("q_norm", "query_layernorm", "q_layernorm"),
    ("k_norm", "key_layernorm", "k_layernorm"),
)

# a fused projection (by its synonym group's first name) -> the projections it stands for: a
# switch biasing GPT-NeoX's query_key_value biases q, k and v
FUSED_PROJECTIONS: dict[str, tuple[str, ...]] = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}

CONFIG_ALIASES: dict[str, tuple[str, ...]] = {
    "rms_norm_eps": (
        "layer_norm_eps",
        "norm_eps",
        "norm_epsilon",
        "layer_norm_epsilon",
        "rms_norm_epsilon",
    ),
    "layer_norm_eps": ("rms_norm_eps", "norm_eps", "layer_norm_epsilon"),
    "num_key_value_heads": ("num_kv_heads",),
    "initializer_range": ("init_std",),  # HF _init_weights reads init_std when it is absent
    "intermediate_size": ("ffn_hidden_size", "ffn_dim", "dff"),
    "num_local_experts": ("num_experts", "n_routed_experts", "moe_num_experts"),
    "num_experts": ("num_local_experts", "n_routed_experts", "moe_num_experts"),
    "n_routed_experts": ("num_experts", "num_local_experts", "moe_num_experts"),
    "num_experts_per_tok": ("moe_topk", "moe_k", "moe_top_k"),
    "routed_scaling_factor": ("router_scaling_factor", "moe_routed_scaling_factor", "route_scale"),
    "moe_intermediate_size": ("intermediate_size", "ffn_hidden_size"),
    "hidden_act": ("hidden_activation", "activation_function"),
}

# field -> the Features value that stands for it when the config has neither the field nor
# an alias (the analysis read the behaviour from the modeling code instead)
CONFIG_FROM_FEATURES: dict[str, str] = {
    "norm_topk_prob": "moe.norm_topk_prob",
    "attention_bias": "attention.qkv_bias",
    "mlp_bias": "ffn.bias",
    # a norm whose epsilon is a constant of the code (OLMo's non-parametric LayerNorm: 1e-5)
    "rms_norm_eps": "norm.eps",
    "layer_norm_eps": "norm.eps",
    # an activation the code calls by name (lfm2's F.silu) where the config names none
    "hidden_act": "ffn.activation",
    # MLA configs that always rotate in interleaved pairs and have no switch for it
    "rope_interleave": "rope.interleaved",
}

# field -> (Features value, config field): a size the code fixes as a whole multiple of that
# field, read so where the config holds the size under no name (bloom's FFN: 4 * hidden)
CONFIG_MULTIPLES: dict[str, tuple[str, str]] = {
    "intermediate_size": ("ffn.intermediate_size", "hidden_size"),
}

# field -> the Features value naming the config field the code reads for it, which wins over
# the field itself (a config may declare both epsilons and leave the unread one None)
CONFIG_FIELD_FROM_FEATURES: dict[str, str] = {
    "rms_norm_eps": "norm.eps_field",
    "layer_norm_eps": "norm.eps_field",
    # the field the FFN's activation is looked up by (`get_activation(config.activation)`,
    # a model-local table `ACT_FNS[config.afn]`: pinned at the config's value, the table key)
    "hidden_act": "ffn.activation_field",
    # the structural sizes, as the constructors are passed them (a remote config's
    # `nn.Embedding(config.n_tokens, ...)`, whisper's decoder `range(config.decoder_layers)`)
    "intermediate_size": "ffn.width_field",
    "vocab_size": "embedding.vocab_field",
    "num_hidden_layers": "block.layers_field",
    "num_attention_heads": "attention.heads_field",
    "num_key_value_heads": "attention.kv_heads_field",
    "head_dim": "attention.head_dim_field",
}

# Fields a model may size several parts by (its dense MLP, a shared expert, the experts:
# llama4_text's shared expert reads intermediate_size, its dense MLP intermediate_size_mlp;
# a BERT layer's two FFN modules): the field the analysis saw replaces only a read the config
# cannot answer (a remote config's `mlp_width`, whisper's `decoder_ffn_dim`).
CONFIG_FIELD_WHEN_MISSING: frozenset[str] = frozenset({"intermediate_size"})

# field -> what a config that has neither the field nor an alias stores instead (legacy
# remote-code configs): the first (fields it needs, expression) whose fields the config has
# wins, before CONFIG_FALLBACKS. Reads inside the expression are resolved the same way.
CONFIG_DERIVATIONS: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "num_key_value_heads": (
        (
            ("multi_query_attention", "multi_query_group_num"),
            "hf_config.multi_query_group_num if hf_config.multi_query_attention"
            " else hf_config.num_attention_heads",
        ),
        (("multi_query",), "1 if hf_config.multi_query else hf_config.num_attention_heads"),
    ),
    "head_dim": (
        (
            ("kv_channels",),
            "hf_config.kv_channels or hf_config.hidden_size // hf_config.num_attention_heads",
        ),
    ),  # kv_channels may be None: then heads split the hidden size
    "partial_rotary_factor": ((("rotary_dim",), "hf_config.rotary_dim / hf_config.head_dim"),),
    "intermediate_size": (
        # GPT-2-style configs: n_inner None means four times the hidden size
        (("n_inner",), "hf_config.n_inner or 4 * hf_config.hidden_size"),
        # the FFN width as a multiple of the hidden size (gpt_neox_japanese)
        (
            ("intermediate_multiple_size",),
            "int(hf_config.hidden_size * hf_config.intermediate_multiple_size)",
        ),
        # the same multiple under MPT-style configs' name for it
        (("expansion_ratio",), "int(hf_config.expansion_ratio * hf_config.hidden_size)"),
    ),
    # no standardised rope_parameters: assembled from the top-level fields, as transformers
    # does for configs that declare them (`rope_scaling` may carry a legacy `type` key)
    "rope_parameters": (
        (
            ("rope_scaling",),
            '{"rope_type": "default", "rope_theta": hf_config.rope_theta,'
            ' "partial_rotary_factor": hf_config.partial_rotary_factor,'
            " **(hf_config.rope_scaling or {})}",
        ),
        (
            (),
            '{"rope_type": "default", "rope_theta": hf_config.rope_theta,'
            ' "partial_rotary_factor": hf_config.partial_rotary_factor}',
        ),
    ),
}

# field -> expression used when the config has neither the field nor an alias
CONFIG_FALLBACKS: dict[str, str] = {
    "num_key_value_heads": "hf_config.num_attention_heads",  # no field: one kv head per head
    "tie_word_embeddings": "False",
    "sliding_window": "None",  # no window field: no window
    "use_sliding_window": "False",
    # no per-layer pattern: every layer slides when the config has a window (mistral-style)
    "layer_types": (
        '["sliding_attention" if hf_config.sliding_window else "full_attention"]'
        " * hf_config.num_hidden_layers"
    ),
    "head_dim": "hf_config.hidden_size // hf_config.num_attention_heads",
    "decoder_sparse_step": "1",  # no step: every layer is an MoE layer
    "mlp_only_layers": "()",
    "first_k_dense_replace": "0",
    "rope_theta": "10000.0",  # transformers' default base
    "partial_rotary_factor": "1.0",
}
