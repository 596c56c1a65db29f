"""Rules for normalisation: the norm kind (every norm of the model), its bias, its placement.

Rows run in this order: the kind makes LayerNorms before norm_bias gives them a bias; the
q/k norms move behind RoPE after the attention rules have made them.
"""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="gated_norm",
        feature="norm.gated",
        values=(True,),
        transform="gated_norm",
        params={"parts": FromFeature("norm.gated_parts")},
        description=(
            "a block norm gated by a low-rank feed-forward of its own output:"
            " norm(x) * sigmoid(w2(act(w1(norm(x))))), on every layer or on the MoE layers"
        ),
    ),
    Rule(
        id="norm_layernorm",
        feature="norm.kind",
        values=("layernorm",),
        transform="set_norm_kind",
        params={"kind": "layernorm"},
        description="nn.LayerNorm (bias=False until norm_bias) for every norm, QK-norms included",
    ),
    Rule(
        id="norm_layernorm_offset",
        feature="norm.kind",
        values=("layernorm_offset",),
        transform="set_norm_kind",
        params={"kind": "layernorm_offset"},
        description="LayerNorm scaled by (1 + weight) (bias=False until norm_bias) for every norm",
    ),
    Rule(
        id="norm_offset",
        feature="norm.kind",
        values=("rmsnorm_offset",),
        transform="set_norm_kind",
        params={"kind": "rmsnorm_offset"},
        description="RMSNorm scaled by (1 + weight) in fp32, cast last (gemma) for every norm",
    ),
    Rule(
        id="rmsnorm_weight_fp32",
        feature="norm.weight_fp32",
        values=(True,),
        transform="rmsnorm_weight_fp32",
        description="RMSNorm weight times the fp32 values, cast last (T5-style: OLMo-2, flint)",
    ),
    Rule(
        id="no_final_norm",
        feature="norm.final",
        values=(False,),
        transform="drop_final_norm",
        description="no norm after the last layer: the head reads its output as it is",
    ),
    Rule(
        id="norm_bias",
        feature="norm.bias",
        values=(True,),
        transform="set_norm_bias",
        params={"enabled": True},
        description="every LayerNorm carries a bias (mapped from the checkpoint)",
    ),
    Rule(
        id="norm_no_weight",
        feature="norm.weight",
        values=(False,),
        transform="drop_norm_weight",
        params={},
        description="non-parametric LayerNorms: no learned scale or bias (OLMo)",
    ),
    Rule(
        id="norm_placement",
        feature="norm.placement",
        values=("post", "post_residual", "sandwich", "parallel"),
        transform="set_norm_placement",
        params={"placement": FromFeature("norm.placement")},
        description="block norms after (post) or around (sandwich) sublayers, or a parallel block",
    ),
    Rule(
        id="parallel_residual_switch",
        feature="norm.placement",
        values=(),  # not a constant feature: realised wherever the source switches on it
        transform="parallel_residual_switch",
        params={"field": "use_parallel_residual"},
        description="the block branches on the flag: attention and MLP off one norm, or pre-norm",
        switch="use_parallel_residual",
        covers=("parallel",),  # GPT-NeoX is parallel by default: both settings, not one
    ),
    Rule(
        id="qk_norm_after_rope",
        feature="rope.qk_norm_after_rope",
        values=(True,),
        transform="qk_norm_after_rope",
        description="the q/k norms take the rotated q/k (after RoPE), not the projections",
    ),
    Rule(
        id="qk_norm_weightless",
        feature="attention.qk_norm_weight",
        values=(False,),
        transform="weightless_qk_norm",
        description="the q/k norms learn no scale (an RMS norm per head, no checkpoint tensor)",
    ),
    Rule(
        # after qk_norm_after_rope: it guards the statement that rule places after RoPE
        id="qk_norm_rope_layers",
        feature="attention.qk_norm_layers",
        values=("rope",),
        transform="qk_norm_rope_layers",
        description="only the layers that apply RoPE norm q and k (NoPE layers do not)",
    ),
    Rule(
        id="bare_first_layer",
        feature="norm.first_layer_bare",
        values=(True,),
        transform="bare_first_layer",
        params={"sublayers": FromFeature("norm.first_layer_bare")},
        description="layer 0 builds nn.Identity for the pre-norms its sublayers go without",
    ),
    Rule(
        # after the placement rules (they write the block's return, which the correction
        # wraps) and before the per-layer inputs (gemma3n adds them to the corrected streams)
        id="altup",
        feature="block.altup",
        values=(True,),
        transform="altup",
        params={"altup": FromFeature("block.altup")},
        description=(
            "the residual stream kept as several AltUp streams: each layer runs on the"
            " active stream's prediction (a per-token mix of all the streams) and corrects"
            " them all from its output; projections in and out around the layers"
        ),
    ),
    Rule(
        # after the placement rules (they write the block's return) and before the output
        # scale: the per-layer addition is part of the sum the scale multiplies
        id="per_layer_inputs",
        feature="block.per_layer_input",
        values=(True,),
        transform="per_layer_inputs",
        params={"per_layer_input": FromFeature("block.per_layer_input")},
        description=(
            "each layer adds act(gate(out)) x its slice of a second token table mixed with a"
            " projection of the embeddings, projected up and normed (per-layer embeddings)"
        ),
    ),
    Rule(
        # after the placement rules (they write the block's return): the adapters run inside
        # the norm of the FFN's residual sum
        id="language_adapters",
        feature="block.language_adapters",
        values=(True,),
        transform="language_adapters",
        params={"language_adapters": FromFeature("block.language_adapters")},
        description=(
            "each layer adds the bottleneck adapter of each sample's language (lang_ids,"
            " default args.default_language) to its FFN's residual sum; every language's"
            " adapter is held and mapped"
        ),
    ),
    Rule(
        # after the placement rules: they write the block's return
        id="layer_output_scale",
        feature="block.output_scale",
        values=(True,),
        transform="layer_output_scale",
        params={
            "attribute": FromFeature("block.output_scale"),
            "trained": FromFeature("block.output_scale_trained"),
        },
        description="each layer's output times a one-element tensor of its own (a checkpoint key)",
    ),
    Rule(
        id="layer_norm_eps",
        feature="norm.layer_eps",
        values=(True,),
        transform="layer_norm_eps",
        params={"eps": FromFeature("norm.layer_eps")},
        description=(
            "the layer norms at the epsilon HF's code fixes (a number written where they are"
            " built, or their class's default), the final norm at the config's (CTRL, JetMoE)"
        ),
    ),
]
