"""Rules for positions other than RoPE: the rotation taken out, an absolute position table
added to the embeddings, and checkpoints that store their projections transposed (the
GPT-2 family's Conv1D, which travels with its learned positions)."""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="no_rope",
        feature="rope.type",
        values=("none",),
        transform="no_rope",
        description="q/k not rotated: positions come from a table, a bias, or nowhere",
    ),
    Rule(
        id="alibi",
        feature="attention.alibi",
        values=(True,),
        transform="alibi",
        description="each head adds slope * key position to its scores (ALiBi: mpt, bloom)",
    ),
    Rule(
        id="relative_position_bias",
        feature="attention.rel_bias",
        values=(True,),
        transform="relative_position_bias",
        params={"bias": FromFeature("attention.rel_bias")},
        description=(
            "a learned relative position bias on the scores: each head's states, projected from"
            " the input, mix a table of profiles over the backward distances, per-layer extent"
            " (inkling)"
        ),
    ),
    Rule(
        # after relative_position_bias: the relative states' clip wraps their view to heads
        id="l2_clips",
        feature="attention.l2_clips",
        values=(True,),
        transform="l2_clips",
        params={"clips": FromFeature("attention.l2_clips")},
        description=(
            "the query, key and/or relative-state head vectors scaled down to a maximum L2"
            " norm, some after a learned scale per head and channel (inkling2)"
        ),
    ),
    Rule(
        id="learned_positions",
        feature="embedding.positions",
        values=("learned",),
        transform="learned_positions",
        description="a learned table's row per position (from row `offset`) added to embeddings",
        params={
            "table": FromFeature("embedding.position_table"),
            "offset": FromFeature("embedding.position_offset"),
        },
    ),
    Rule(
        # after learned_positions: it pads that table
        id="padded_positions",
        feature="embedding.position_padding",
        values=(True,),
        transform="padded_positions",
        description="default positions count the non-padding tokens from row pad + 1 (RoBERTa)",
        params={"field": FromFeature("embedding.position_padding")},
    ),
    Rule(
        # after the position rules: its norm takes the sum of every table
        id="embedding_module",
        feature="embedding.module",
        values=(True,),
        transform="embedding_module",
        description="BERT's embeddings module: token-type row 0 added, the sum normed",
        params={
            "word_table": FromFeature("embedding.word_table"),
            "token_type_table": FromFeature("embedding.token_type_table"),
            "norm": FromFeature("embedding.module_norm"),
            "width": FromFeature("embedding.module_width"),
            "projection": FromFeature("embedding.module_projection"),
            "switched": FromFeature("embedding.module_projection_switched"),
        },
    ),
    Rule(
        # after embedding_module: its projection takes the token rows before the other tables
        id="side_tables",
        feature="embedding.side_tables",
        values=(True,),
        transform="side_tables",
        description="side tables' rows (RoCBert's shape, pronunciation) concatenated to the"
        " token rows and mapped back to dim; their ids optional forward inputs",
        params={
            "tables": FromFeature("embedding.side_tables"),
            "projection": FromFeature("embedding.side_projection"),
            "switch": FromFeature("embedding.side_switch"),
        },
    ),
    Rule(
        id="sinusoidal_positions",
        feature="embedding.positions",
        values=("sinusoidal",),
        transform="sinusoidal_positions",
        description="tensor2tensor's fixed [sin | cos] table row per position added to embeddings",
        params={"offset": FromFeature("embedding.position_offset")},
    ),
    Rule(
        id="sinusoidal_pow_positions",
        feature="embedding.positions",
        values=("sinusoidal_pow",),
        transform="sinusoidal_positions",
        description="CTRL's fixed [sin | cos] table over 10000^(2k/dim) added to embeddings",
        params={"offset": FromFeature("embedding.position_offset"), "form": "pow"},
    ),
    Rule(
        id="transposed_linears",
        feature="state_dict.transposed_keys",
        values=(True,),
        transform="transposed_linears",
        description="projections stored [in, out] in the checkpoint (Conv1D) transposed on load",
        params={
            "keys": FromFeature("state_dict.transposed_keys"),
            "prefix": FromFeature("state_dict.prefix"),
        },
    ),
    Rule(
        # before scaled_residual_init: a projection HF draws scaled is drawn after this
        id="constructor_std",
        feature="state_dict.constructor_std",
        values=(True,),
        transform="constructor_std",
        description="parameters HF's _init_weights leaves as their module's constructor drew"
        " them start at its std whatever initializer_range (GPT-1's Conv1D projections)",
        params={"stds": FromFeature("state_dict.constructor_std")},
    ),
    Rule(
        id="scaled_residual_init",
        feature="block.scaled_residual_init",
        values=(True,),
        transform="scaled_residual_init",
        description="attention/MLP output weights start at std / sqrt(2 * n_layers) (GPT-2 init)",
        params={"projections": FromFeature("block.scaled_residual_projections")},
    ),
    Rule(
        # after every rule that adds a normal draw to init_weights (scaled_residual_init)
        id="truncated_init",
        feature="block.init_cutoff",
        values=(True,),
        transform="truncated_init",
        description="normal inits truncated at +-cutoff stds (HF's trunc_normal_, ModernBERT)",
        params={"cutoff": FromFeature("block.init_cutoff")},
    ),
    # in the last group: it rewrites `apply_rotary(q, cos, sin)`, which rope/attention/norm
    # transforms (qk_norm_after_rope, NoPE layers) find by that shape
    Rule(
        id="reversed_rope",
        feature="rope.reversed",
        values=(True,),
        transform="reversed_rope",
        description="q/k halves turn by -angle: rotate_half is cat((x2, -x1)) (nanochat)",
    ),
    Rule(
        id="rope_fp32_layer_types",
        feature="rope.fp32_types",
        values=(True,),
        transform="rope_fp32_layer_types",
        params={"types": FromFeature("rope.fp32_types")},
        description=(
            "the layers of the types whose tables HF computes from fp32 inputs (dots3's"
            " indexed layers) turn q/k in fp32 and cast them back once"
        ),
    ),
    Rule(
        # last: the rope rules before it anchor on the plain `apply_rotary(q, cos, sin)`
        id="rope_fp32",
        feature="rope.fp32",
        values=(True,),
        transform="rope_fp32",
        params={"tables_fp32": FromFeature("rope.tables_fp32")},
        description="q/k turn in fp32 and are cast back once, as HF's rotary function does"
        " (on cos/sin rounded to the model's dtype, or kept in fp32 where HF keeps them)",
    ),
]
