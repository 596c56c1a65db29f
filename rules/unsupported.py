"""Feature values codegen recognises but no reference or rule realises yet, and why.

`codegen analyze` lists a target with one of these under `unsupported`, and `codegen
scaffold` stops before writing anything. A test keeps this table honest: every value the
analyzer can emit is handled by a reference, a rule, or a row here, and a row disappears
once a rule covers its value.
"""

UNSUPPORTED: dict[tuple[str, object], str] = {
    ("rope.type", "longrope"): (
        "two frequency tables switched by sequence length (phi3 long context): no rule yet"
    ),
    ("rope.group", "other"): (
        "rope_parameters grouped under labels that are not layer types, the attention layers"
        " rotating with several groups or with a group not read from the code: no rule yet"
    ),
    ("embedding.positions", "sinusoidal_other"): (
        "a sin/cos position table other than tensor2tensor's or CTRL's: no rule yet"
    ),
    ("attention.output_gate", "other"): (
        "an attention output gate other than sigmoid(projection of the input) (+ a per-head"
        " bias): no rule yet"
    ),
    ("attention.l2_clips", "other"): (
        "head vectors clipped to a maximum L2 norm in another form (the values clipped, a"
        " learned scale not one per head and channel, a threshold not read from the config):"
        " no rule yet"
    ),
    ("attention.output_rotation", "forward"): (
        "the attention output rotated by the query's rotary factors as they are (not turned"
        " back) before the output projection: no rule yet"
    ),
    ("attention.o_low_rank", "other"): (
        "the attention output projected twice in a row other than by groups of heads each"
        " through a block of its own (a grouped linear with a config group count) and then a"
        " plain linear: no rule yet"
    ),
    ("attention.low_rank_q", "other"): (
        "the query up-projected from a normed latent (keys and values not latent) other than"
        " through a weighted norm on a config-sized latent, unbiased projections and a"
        " weightless norm over each head after: no rule yet"
    ),
    ("attention.qk_norm_on", "queries"): (
        "a norm on the queries after their projection and none on the keys: no rule yet"
    ),
    ("attention.qk_norm_eps", "other"): (
        "a q/k norm whose epsilon is neither the block norms' nor a config field or number the"
        " code passes (or q and k norms of different epsilons): no rule yet"
    ),
    ("attention.v_norm", "other"): (
        "a norm on the values other than one over each head after the view to heads (over the"
        " flat projection output): no rule yet"
    ),
    ("attention.latent_norm_eps", "other"): (
        "latent attention's q/kv latent norms with an epsilon neither 1e-6 nor the config's"
        " rms_norm_eps: no rule yet"
    ),
    ("attention.latent_norms", "q"): (
        "latent attention whose kv latent goes up-projected without a norm of its own width"
        " (none, or one over the latent and the rope key together): no rule yet"
    ),
    ("attention.latent_norms", "none"): (
        "latent attention whose latents go up-projected without a norm of their own width:"
        " no rule yet"
    ),
    ("attention.latent_scale", "other"): (
        "a normed latent (or every part of its up-projection) times a constant other than"
        " sqrt(hidden / its width): no rule yet"
    ),
    ("attention.layer_shapes", "other"): (
        "attention projections sized per layer by something other than the config's"
        " per-layer overrides of the head size and counts (or, under latent attention, of"
        " the latent sizes), or than a head size or head counts computed from the config"
        " and the layer index (a size not heads x head size): no rule yet"
    ),
    ("attention.rel_bias", "other"): (
        "a position bias handed to the attention kernel other than a learned table of"
        " per-distance profiles mixed per head by a projection of the input, gathered at the"
        " clamped backward distance and zero beyond its extent: no rule yet"
    ),
    ("attention.v_head_dim", "other"): (
        "value heads sized apart from the key heads by a size not restated over the config:"
        " no rule yet"
    ),
    ("attention.v_scale", "other"): (
        "the values times a factor not restated over the config (or not one on every layer):"
        " no rule yet"
    ),
    ("attention.sink_rule", "other"): (
        "attention sinks on some layers only, under a condition of `__init__` not restated"
        " over the config: no rule yet"
    ),
    ("embedding.padding_idx", "other"): (
        "the word table's padding row read from a config field other than pad_token_id:"
        " no rule yet (the package would map the wrong field)"
    ),
    ("attention.kv_sharing", "other"): (
        "keys/values taken from an input of the attention's forward (another layer's or a"
        " cache's states) instead of its own projections, in another form than gemma3n's"
        " (the last layers reuse what the last earlier layer of their kind stored): no rule yet"
    ),
    ("ffn.activation_sparsity", "other"): (
        "a projection thresholded by its own statistics before the activation (x - (mean +"
        " k * std): activation sparsity) in another form than gemma3n's Gaussian top-k"
        " (relu(gate - (mean + population std * the normal quantile of a config value)),"
        " applied where that value is positive): no rule yet"
    ),
    ("attention.routed", "other"): (
        "mixture of attention heads in another form than JetMoE's (a router picking the top-k"
        " logits then a softmax over them, one stacked query and one output expert module,"
        " one shared key/value linear, the MoE's experts count and top-k): no rule yet"
    ),
    ("attention.key_selection", "other"): (
        "keys chosen per query by a learned scorer other than DeepSeek sparse attention's"
        " indexer (LayerNorm'd key head, query heads from the query latent, relu, top-k):"
        " no rule yet"
    ),
    ("block.residual_scale", "scaled_stream"): (
        "the residual stream itself scaled before the add, not only the sublayer's output,"
        " other than beam's depth-scaled sum or a learned per-channel weight: no rule yet"
    ),
    ("attention.dynamic_mask", "other"): (
        "a score bias computed from the values other than exp(A * softplus(projection of the"
        " values)) per kv head with an optional top-k window from the config: no rule yet"
    ),
    ("attention.type_block", "other"): (
        "block ids handed to the mask builder other than one token type, switched by a config"
        " field, seeing itself both ways: no rule yet"
    ),
    ("rope.type", "other"): "a position encoding the analyzer does not recognise",
    ("moe.router", "other"): "a routing function the analyzer does not recognise",
    ("ffn.kind", "other"): (
        "a feed-forward of no named kind (its evidence says gated or not, and the"
        " activation): no rule yet"
    ),
}
