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
    ("embedding.positions", "sinusoidal_other"): (
        "a sin/cos position table other than tensor2tensor's or CTRL's: no rule yet"
    ),
    ("attention.output_gate", "other"): (
        "an attention output gate other than sigmoid(projection of the input) (+ a per-head"
        " bias): no rule yet"
    ),
    ("attention.v_norm", "other"): (
        "a norm on the values other than one over each head after the view to heads (over the"
        " flat projection output): no rule yet"
    ),
    ("attention.latent_norm_eps", "other"): (
        "latent attention's q/kv latent norms with an epsilon neither 1e-6 nor the config's"
        " rms_norm_eps: no rule yet"
    ),
    ("attention.latent_scale", "other"): (
        "a normed latent (or every part of its up-projection) times a constant other than"
        " sqrt(hidden / its width): no rule yet"
    ),
    ("attention.layer_shapes", "other"): (
        "attention projections sized per layer by something other than the config's"
        " per-layer overrides of the head size and counts (or, under latent attention, of"
        " the latent sizes): no rule yet"
    ),
    ("embedding.padding_idx", "other"): (
        "the word table's padding row read from a config field other than pad_token_id:"
        " no rule yet (the package would map the wrong field)"
    ),
    ("attention.key_selection", "other"): (
        "keys chosen per query by a learned scorer other than DeepSeek sparse attention's"
        " indexer (LayerNorm'd key head, query heads from the query latent, relu, top-k):"
        " no rule yet"
    ),
    ("block.residual_scale", "scaled_stream"): (
        "the residual stream itself scaled before the add, not only the sublayer's output"
        " (beam's depth-scaled sum: both operands times factors of the layer index; doge's"
        " learned per-channel residual weights): no rule yet"
    ),
    ("rope.type", "other"): "a position encoding the analyzer does not recognise",
    ("moe.router", "other"): "a routing function the analyzer does not recognise",
    ("ffn.kind", "other"): (
        "a feed-forward of no named kind (its evidence says gated or not, and the"
        " activation): no rule yet"
    ),
}
