"""Rules for attention features: biases, QK-norm, windows, sinks, softcaps, scaling."""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="qkv_bias",
        feature="attention.qkv_bias",
        values=(True, False),
        transform="set_qkv_bias",
        params={"enabled": FromFeature("attention.qkv_bias")},
        description="q/k/v projections carry a bias (mapped from the checkpoint)",
        native_in=("qwen2",),
        fixes="attention_bias",
        bias_of=("q_proj", "k_proj", "v_proj"),
    ),
    Rule(
        id="o_bias",
        feature="attention.o_bias",
        values=(True, False),
        transform="set_o_bias",
        params={"enabled": FromFeature("attention.o_bias")},
        description="the attention output projection carries a bias, or not (q/k/v's may)",
        fixes="attention_bias",
        bias_of=("o_proj",),
    ),
    Rule(
        id="differential_attention",
        feature="attention.differential",
        values=(True,),
        transform="differential_attention",
        params={"differential": FromFeature("attention.differential")},
        description=(
            "two attention maps per head pair, the second times a learned lambda subtracted,"
            " a weightless RMSNorm and (1 - lambda_init) (DiffLlama)"
        ),
    ),
    Rule(
        id="attention_sub_norm",
        feature="attention.sub_norm",
        values=(True,),
        transform="add_sub_norm",
        params={"site": "attention"},
        description="the attention output normed before the output projection (bitnet)",
    ),
    Rule(
        id="output_rotation",
        feature="attention.output_rotation",
        values=("inverse",),
        transform="output_rotation",
        description=(
            "the attention output's heads rotated back (sin negated) at the query's position"
            " before the output projection (DeepSeek-V4, whose values carry the keys' rotation)"
        ),
    ),
    Rule(
        id="values_are_keys",
        feature="attention.kv_same",
        values=(True,),
        transform="values_are_keys",
        description=(
            "no value projection: the rotated keys are handed to the attention as the values"
            " too (DeepSeek-V4's kv_proj)"
        ),
    ),
    Rule(
        id="grouped_output",
        feature="attention.o_low_rank",
        values=(True,),
        transform="grouped_output",
        params={"grouped": FromFeature("attention.o_low_rank")},
        description=(
            "the output projected per group of heads (a block each) to o_lora_rank, then"
            " mixed to the hidden size (DeepSeek-V4's o_a_proj -> o_b_proj)"
        ),
    ),
    Rule(
        id="low_rank_q",
        feature="attention.low_rank_q",
        values=(True,),
        transform="low_rank_q",
        params={"low_rank": FromFeature("attention.low_rank_q")},
        description=(
            "the query up-projected from a normed latent of q_lora_rank features, then normed"
            " per head without a scale (DeepSeek-V4's q_a_proj -> q_a_norm -> q_b_proj -> q_b_norm)"
        ),
    ),
]

# Order matters: the window and softcap/sinks edit the SDPA call (softcap/sinks write the
# attention out), and `fused_qkv` runs last because the others anchor on `self.wq(x)`.
RULES += [
    Rule(
        id="qk_norm_per_head",
        feature="attention.qk_norm",
        values=("per_head",),
        transform="set_qk_norm",
        params={"kind": "per_head", "on": FromFeature("attention.qk_norm_on")},
        description=(
            "q/k (or the keys alone: keys_only_norm) get an RMSNorm over head_dim after the"
            " projection, before RoPE"
        ),
        native_in=("qwen3", "qwen3_moe"),
    ),
    Rule(
        id="qk_norm_full",
        feature="attention.qk_norm",
        values=("full",),
        transform="set_qk_norm",
        params={"kind": "full", "on": FromFeature("attention.qk_norm_on")},
        description=(
            "q/k (or the keys alone: keys_only_norm) get an RMSNorm over the whole projection"
            " output, before the head split"
        ),
    ),
    Rule(
        id="no_qk_norm",
        feature="attention.qk_norm",
        values=("none",),
        transform="set_qk_norm",
        params={"kind": "none"},
        description="the reference's QK-norm is removed",
        native_in=("llama", "qwen2", "deepseek_v3"),
    ),
    Rule(
        # after the qk_norm rows: it keeps the keys' norm they (or the reference) build
        id="keys_only_norm",
        feature="attention.qk_norm_on",
        values=("keys",),
        transform="keys_only_norm",
        description=(
            "only the keys are normed after their projection (and the values, where they are"
            " the keys: DeepSeek-V4's kv_norm); the query's q_norm is removed"
        ),
    ),
    Rule(
        # after the qk_norm rows and keys_only_norm: it edits the norms they (or the
        # reference) build
        id="qk_norm_eps",
        feature="attention.qk_norm_eps",
        values=(True,),
        transform="qk_norm_eps",
        params={"eps": FromFeature("attention.qk_norm_eps")},
        description=(
            "the q/k norms (or the keys' alone) take the epsilon the code passes them, a config"
            " field or a number, not the block norms' norm_eps"
        ),
    ),
    Rule(
        # before fused_qkv: it anchors on the value projection viewed to heads
        id="value_norm",
        feature="attention.v_norm",
        values=("per_head",),
        transform="value_norm",
        params={"weight": FromFeature("attention.v_norm_weight")},
        description="v gets an RMSNorm over each head after the projection (weightless: gemma4)",
    ),
    Rule(
        # before fused_qkv: it anchors on the value projection and its view to heads
        id="value_head_dim",
        feature="attention.v_head_dim",
        values=(True,),
        transform="value_head_dim",
        params={"field": FromFeature("attention.v_head_dim")},
        description=(
            "value heads v_head_dim wide beside the q/k heads' head_dim (wv and wo sized by it;"
            " MiMo-V2-Flash)"
        ),
    ),
    Rule(
        id="value_scale",
        feature="attention.v_scale",
        values=(True,),
        transform="value_scale",
        params={"factor": FromFeature("attention.v_scale")},
        description=(
            "the values times a factor read as HF computes it from the config, before the"
            " attention (MiMo-V2-Flash's attention_value_scale, 1.0 when None)"
        ),
    ),
    Rule(
        id="sliding_window_all",
        feature="attention.sliding_window",
        values=("all",),
        transform="set_sliding_window",
        params={"mode": "all"},
        description="every layer attends to the last `sliding_window` keys (None: causal)",
    ),
    Rule(
        id="sliding_window_pattern",
        feature="attention.sliding_window",
        values=("pattern",),
        transform="set_sliding_window",
        params={
            "mode": "pattern",
            "layer_rule": FromFeature("attention.window_rule"),
            "window": FromFeature("attention.window_field"),
        },
        description='layers marked "sliding_attention" in layer_types attend to a window',
        native_in=("qwen2", "qwen3"),
        # a source that windows layers by type needs the pattern in every setting, also
        # where the analysed config types none sliding but sets `sliding_window`
        switch="layer_types=sliding_attention",
        covers=("all",),  # every layer typed sliding
    ),
    Rule(
        # a reference that windows layers natively reads "sliding_attention" from the
        # config's layer_types: a target that types them otherwise (inkling's
        # "hybrid_sliding", GPT-Neo's attention_layers) needs the condition restated
        id="sliding_window_rule",
        feature="attention.window_rule",
        values=(True,),
        transform="set_sliding_window",
        params={
            "mode": "pattern",
            "layer_rule": FromFeature("attention.window_rule"),
            "window": FromFeature("attention.window_field"),
        },
        description=(
            "the sliding layers chosen by a condition over the config (layer types named"
            " otherwise than sliding_attention, or another list)"
        ),
    ),
    Rule(
        id="no_sliding_window",
        feature="attention.sliding_window",
        values=("none",),
        transform="set_sliding_window",
        params={"mode": "none"},
        description="the reference's sliding window is removed (plain causal attention)",
        native_in=("llama", "deepseek_v3"),
        reached_by=("sliding_window", "layer_types", "use_sliding_window"),
    ),
    Rule(
        id="bidirectional_attention",
        feature="attention.bidirectional",
        values=(),  # not a constant feature: realised wherever the source switches on it
        transform="bidirectional_attention",
        params={"field": "use_bidirectional_attention", "value": "all"},
        description=(
            'with use_bidirectional_attention="all" attention is not causal: full layers see'
            " every token, sliding layers the tokens at most sliding_window away either side"
        ),
        switch="use_bidirectional_attention=all",
    ),
    Rule(
        # after the window rules: sliding blocks take the sliding table
        id="rope_per_layer_type",
        feature="rope.per_layer_type",
        values=(True,),
        transform="rope_per_layer_type",
        description=(
            "rope_parameters nested per layer type: one cos/sin table per type (full_attention"
            " from its entry; sliding_attention layers from theirs where the package slides)"
        ),
    ),
    Rule(
        id="attention_softcap",
        feature="attention.softcap",
        values=(True,),
        transform="add_attention_softcap",
        params={"hf_field": "attn_logit_softcapping"},
        description="attention scores are tanh soft-capped before the mask (explicit softmax)",
    ),
    Rule(
        id="attention_sinks",
        feature="attention.sinks",
        values=(True,),
        transform="add_attention_sinks",
        description="a learned per-head sink logit joins the softmax and is dropped after it",
    ),
    Rule(
        id="token_sinks",
        feature="attention.sinks",
        values=("per_token",),
        transform="token_sinks",
        params={"projection": FromFeature("attention.sink_projection")},
        description=(
            "each token's sink logit per head, projected from its input, joins its softmax and"
            " is dropped after it (inkling2)"
        ),
    ),
    Rule(
        # after attention_sinks: it keeps their softmax for the layers that have them
        id="layer_sinks",
        feature="attention.sink_rule",
        values=(True,),
        transform="layer_sinks",
        params={"rule": FromFeature("attention.sink_rule")},
        description=(
            "only the layers where HF's condition (restated over the config) holds have sinks;"
            " the others softmax their scores alone (MiMo-V2-Flash's sliding layers)"
        ),
    ),
    Rule(
        id="output_gate",
        feature="attention.output_gate",
        values=("sigmoid", "softplus"),
        transform="add_output_gate",
        params={
            "projection": FromFeature("attention.gate_proj"),
            "bias": FromFeature("attention.gate_bias"),
            "head_bias": FromFeature("attention.gate_head_bias"),
            "fn": FromFeature("attention.output_gate"),
            "per_head": FromFeature("attention.gate_per_head"),
            "fp32": FromFeature("attention.gate_fp32"),
        },
        description=(
            "the attention output times sigmoid(wg(x)) before wo, wg a projection of its own"
            " (plus a learned per-head bias where the source adds one); softplus(wg(x)) in"
            " fp32 where the source has it, one gate per head where wg has one output per head;"
            " the sigmoid in fp32 where the source upcasts the gate"
        ),
    ),
    Rule(
        id="nope_layers",
        feature="rope.nope_layers",
        values=(True,),
        transform="add_nope_layers",
        params={"rope_rule": FromFeature("rope.nope_rule")},
        description=(
            "layers in nope_layers skip RoPE: those where the source's guard around the"
            " rotation, restated over the config, is false"
        ),
    ),
    Rule(
        id="fused_qkv",
        feature="attention.fused_qkv",
        values=(True,),
        transform="fuse_qkv",
        params={
            "hf_name": "qkv_proj",
            "layout": FromFeature("attention.qkv_layout"),
            "blocks": FromFeature("attention.qkv_blocks"),
            "order": FromFeature("attention.qkv_order"),
        },
        description=(
            "one wqkv projection split after the matmul in the checkpoint's row layout "
            "(q | k | v, grouped per kv head, or interleaved per head; rows in blocks of"
            " q, k, v regrouped by the adapter)"
        ),
    ),
    Rule(
        # after o_bias: it replaces the adapter's wo.bias row
        id="last_layer_o_bias",
        feature="attention.last_layer_o_bias",
        values=(True,),
        transform="last_layer_o_bias",
        params={"name": FromFeature("attention.last_layer_o_bias")},
        description="only the last layer's attention output carries a bias (gpt_neox_japanese)",
    ),
    Rule(
        id="clip_qkv",
        feature="attention.qkv_clip",
        values=(),  # not a constant feature: realised wherever the source switches on it
        transform="clip_qkv",
        description="q/k/v are clamped to [-clip_qkv, clip_qkv] when the config sets it",
        switch="clip_qkv",
    ),
    Rule(
        id="softmax_scale",
        feature="attention.softmax_scale",
        values=(),  # not a constant feature: realised wherever the source switches on it
        transform="optional_softmax_scale",
        description="scores times the config's softmax_scale when set, head_dim ** -0.5 when None",
        switch="softmax_scale",
    ),
    Rule(
        id="keys_as_values",
        feature="attention.keys_as_values",
        values=(),  # not a constant feature: realised wherever the source switches on it
        transform="keys_as_values",
        description=(
            "with attention_k_eq_v, full-attention layers have no value projection: values are"
            " the keys' projection before k_norm and the rotation"
        ),
        switch="attention_k_eq_v",
    ),
    Rule(
        id="chunked_attention",
        feature="attention.chunked",
        values=(True,),
        transform="chunked_attention",
        params={"field": FromFeature("attention.chunked")},
        description=(
            '"chunked_attention" layers attend causally inside chunks of attention_chunk_size '
            "tokens (llama4_text)"
        ),
    ),
    Rule(
        id="logn_attention",
        feature="attention.logn",
        values=(True,),
        transform="logn_attention",
        params={"logn": FromFeature("attention.logn")},
        description=(
            "rotated queries times 1 + beta * log(1 + floor(position / period)), beta and"
            " period read from the config fields HF reads"
        ),
    ),
    Rule(
        # last: the rules before it anchor on the plain scores and SDPA's q, k, v
        id="fp32_attention_scores",
        feature="attention.scores_fp32",
        values=(True,),
        transform="fp32_attention_scores",
        description=(
            "q @ k^T, the mask, sinks and softmax in fp32, the probabilities cast to v's dtype"
            " (HF's eager attention upcasts q and k: flint)"
        ),
    ),
]

RULES += [
    Rule(
        # before any rule writes the attention maths out: the bias is SDPA's additive mask
        id="dynamic_mask",
        feature="attention.dynamic_mask",
        values=(True,),
        transform="dynamic_mask",
        params={"mask": FromFeature("attention.dynamic_mask")},
        description=(
            "each key's score biased by exp(A * softplus(projection of the values)) per kv"
            " head, causally masked; past the config's window only the largest biases per"
            " query row stay (doge's dynamic mask)"
        ),
    ),
    Rule(
        id="type_block_mask",
        feature="attention.type_block",
        values=(True,),
        transform="type_block_mask",
        params={"block": FromFeature("attention.type_block")},
        description=(
            "the forward takes the token types HF's backbone takes and, while the config"
            " switch holds, the tokens of one type see each other both ways in the causal"
            " mask (HRM-Text's prefix LM)"
        ),
    ),
    Rule(
        id="indexed_attention",
        feature="attention.key_selection",
        values=(True,),
        transform="indexed_attention",
        params={"indexer": FromFeature("attention.key_selection")},
        description=(
            "each query attends only to the index_topk causal keys a learned indexer scores"
            " highest (DeepSeek sparse attention)"
        ),
    ),
    Rule(
        # after indexed_attention: it names the normed query latent this reads
        id="q_latent_concat",
        feature="attention.q_latent_raw",
        values=(True,),
        transform="q_latent_concat",
        description=(
            "the query up-projection reads the query latent normed and as it is:"
            " wq_b(cat([q_norm(a), a])), twice the q LoRA rank of inputs"
        ),
    ),
    Rule(
        # after indexed_attention and q_latent_concat: they rewrite the query line whose
        # normed latent this scales (the indexer reads it scaled, as HF's)
        id="latent_scale",
        feature="attention.latent_scale",
        values=("q", "kv", "q_kv"),
        transform="latent_scale",
        params={"which": FromFeature("attention.latent_scale")},
        description=(
            "the normed q and/or kv latents times sqrt(hidden / rank) before their"
            " up-projections (dots3)"
        ),
    ),
    Rule(
        id="latent_norm_eps",
        feature="attention.latent_norm_eps",
        values=("norm_eps",),
        transform="latent_norm_eps",
        description="the q/kv latent norms take the config's rms_norm_eps, not 1e-6",
    ),
    Rule(
        id="k_rope_norm",
        feature="attention.k_rope_norm",
        values=(True,),
        transform="k_rope_norm",
        params={"norm": FromFeature("attention.k_rope_norm")},
        description="the shared rope key is RMS-normed before its rotation (dots3)",
    ),
    Rule(
        id="output_gate_fused_q",
        feature="attention.output_gate",
        values=("sigmoid_fused_q",),
        transform="fused_q_gate",
        params={
            "projection": FromFeature("attention.gate_proj"),
            "layout": FromFeature("attention.gate_layout"),
            "fp32": FromFeature("attention.gate_fp32"),
        },
        description=(
            "the attention output times sigmoid(gate) before wo, the gate rows of the query"
            " projection (per head after each head's query, or after every query row, as the"
            " checkpoint stores them); the sigmoid in fp32 where the source upcasts"
        ),
    ),
    Rule(
        # last of the attention rules: every size the others read in Attention.__init__
        # becomes the layer's own, and the per-type RoPE tables exist to be sized
        id="layer_attention_sizes",
        feature="attention.layer_shapes",
        values=("per_layer_config",),
        transform="layer_attention_sizes",
        description=(
            "each layer's attention sized by its own head size and kv heads (the config's"
            " per_layer_config), each RoPE table by the head size of its layer type"
        ),
    ),
    Rule(
        # last, as layer_attention_sizes (the same transform, sizes computed per layer)
        id="layer_attention_sizes_rule",
        feature="attention.layer_shapes",
        values=("rule",),
        transform="layer_attention_sizes",
        params={"rules": FromFeature("attention.layer_sizes")},
        description=(
            "each layer's head size or kv heads computed from the config and the layer index as"
            " HF's attention does (MiMo-V2-Flash: twice the kv heads on sliding layers)"
        ),
    ),
    Rule(
        # last, as layer_attention_sizes: every size Attention (and the indexer it builds)
        # reads becomes the layer's own
        id="latent_layer_sizes",
        feature="attention.layer_shapes",
        values=("latent",),
        transform="latent_layer_sizes",
        description=(
            "each layer's latent attention (and its indexer and output gate) sized by its own"
            " heads, latent ranks and q/k/v head parts (the config's per_layer_config), each"
            " RoPE table as wide as its layers' rotated part"
        ),
    ),
    Rule(
        id="kv_convs",
        feature="attention.kv_convs",
        values=(True,),
        transform="kv_convs",
        params={"convs": FromFeature("attention.kv_convs")},
        description=(
            "causal depthwise convolutions over the key and value projections, each added back"
            " to its projection before the key norm (inkling's short convolutions)"
        ),
    ),
    Rule(
        id="conv_qkv_projection",
        feature="attention.conv_projection",
        values=(True,),
        transform="conv_qkv_projection",
        params={"conv": FromFeature("attention.conv_projection")},
        description=(
            "queries and keys filtered over the sequence by a depthwise then a per-head causal"
            " convolution, each with a mix of the two projections added; half the value heads"
            " project the previous token (zaya's CCA)"
        ),
    ),
    Rule(
        id="l2_qk_norm",
        feature="attention.l2_qk_norm",
        values=(True,),
        transform="l2_qk_norm",
        params={"norm": FromFeature("attention.l2_qk_norm")},
        description=(
            "queries and keys rescaled to a fixed L2 norm before RoPE, the keys then by a"
            " learned scale per kv head (zaya)"
        ),
    ),
    Rule(
        # after the attention is written out (its keys hidden by a float table)
        id="compressed_kv",
        feature="attention.compressed_kv",
        values=(True,),
        transform="compressed_kv",
        params={"pooled": FromFeature("attention.compressed_kv")},
        description=(
            "on the layers of one type the keys (the values) are extended by entries pooled"
            " from windows of compress_rate tokens, each seen once the query has passed its"
            " window (DeepSeek-V4's heavily compressed attention); on the layers of a second"
            " type, entries pooled over two windows, of which an indexer picks index_topk per"
            " query (its compressed sparse attention)"
        ),
    ),
    Rule(
        # last: it moves the forward's key/value statements as the rules above left them
        id="kv_sharing",
        feature="attention.kv_sharing",
        values=(True,),
        transform="kv_sharing",
        params={"sharing": FromFeature("attention.kv_sharing")},
        description=(
            "the last num_kv_shared_layers layers reuse the keys and values of the last"
            " earlier layer of their kind, projecting none of their own (gemma3n, gemma4)"
        ),
    ),
]
