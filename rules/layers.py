"""Rules for the layer itself: kinds whose token mixer is not attention, and layers of several
attention sublayers (run after every attention, feed-forward and MoE edit, so the parts they
repeat are already the target's)."""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="short_conv_layers",
        feature="block.short_conv",
        values=(True,),
        transform="short_conv_layers",
        params={"short_conv": FromFeature("block.short_conv")},
        description=(
            "layers a per-layer config list marks mix tokens with a gated causal depthwise"
            " convolution instead of attention (LFM2's short conv)"
        ),
    ),
    Rule(
        id="shortcut_sublayers",
        feature="block.sublayers",
        values=(True,),
        transform="shortcut_sublayers",
        params={"sublayers": FromFeature("block.sublayers")},
        description=(
            "a layer of attention sublayers, each with its own dense feed-forward and"
            " pre-norms (module lists of the reference's parts), beside a shortcut MoE that"
            " reads one sublayer's normed feed-forward input and joins the last residual sum"
            " (LongCat-Flash)"
        ),
    ),
    Rule(
        id="recurrent_stacks",
        feature="block.recurrent_stacks",
        values=(True,),
        transform="recurrent_stacks",
        params={"stacks": FromFeature("block.recurrent_stacks")},
        description=(
            "two alike layer stacks, each normed at its end, run in nested cycles on an inner"
            " state (from a checkpoint vector) and an outer one (from the embeddings): per"
            " cycle the inner stack config-many times, only the last few runs with"
            " gradients, then the outer stack once (HRM)"
        ),
    ),
    Rule(
        # after residual_affine (embedding group): the MoE's call leaves the residual add
        # for a statement of its own, which returns the state beside the output
        id="router_mlp",
        feature="moe.router_mlp",
        values=(True,),
        transform="router_mlp",
        params={"found": FromFeature("moe.router_mlp")},
        description="the router's logits from an MLP (norm, linear layers with an activation"
        " between each) over a down-projection to which every layer but the first adds the"
        " previous layer's state times a learned per-channel vector, one skip class past the"
        " experts' rows (a token picking it gets no expert); the state threaded through the"
        " layer loop (zaya)",
    ),
    Rule(
        # after every attention rule (the copy is the attention they made) and the
        # positions group (its relative bias states are scaled)
        id="log_scaled_layers",
        feature="attention.layer_logn",
        values=(True,),
        transform="log_scaled_layers",
        params={"log_scaling": FromFeature("attention.layer_logn")},
        description=(
            "the full-attention layers build an attention class of their own: queries and"
            " relative-position states times 1 + alpha * log(max((position + offset) / floor,"
            " 1)) (Inkling-2's full layers)"
        ),
    ),
    Rule(
        # after log_scaled_layers: the keys and values of its full layers' class read the
        # inputs
        id="layer_kv_inputs",
        feature="attention.layer_inputs",
        values=(True,),
        transform="layer_kv_inputs",
        params={
            "inputs": FromFeature("attention.layer_inputs"),
            "residuals": FromFeature("block.attention_residuals"),
        },
        description=(
            "the full-attention layers' keys and values read inputs of their own: the layer's"
            " input through a norm each, beside the queries' norm (Inkling-2's full layers)"
        ),
    ),
    Rule(
        # after layer_kv_inputs: the filters' taps read the keys' and values' inputs
        id="layer_kv_convs",
        feature="attention.layer_kv_convs",
        values=(True,),
        transform="layer_kv_convs",
        params={"convs": FromFeature("attention.layer_kv_convs")},
        description=(
            "the full-attention layers' key/value filters take per-token taps: fixed taps plus"
            " a linear of the projection's input, one set per key/value head (Inkling-2's full"
            " layers)"
        ),
    ),
    Rule(
        # last: the rules before may read or extend the reference's per-layer dense/MoE
        # choice (a gated MoE norm, the router MLP's state), settled here once. A MoE
        # reference chooses over decoder_sparse_step / mlp_only_layers (qwen3_moe) or
        # first_k_dense_replace (deepseek_v3); a target whose source reads none of them and
        # builds its MoE block unconditionally (mixtral, olmoe) has no dense layer
        id="every_layer_moe",
        feature="moe.layer_condition",
        values=("all",),
        transform="every_layer_moe",
        description=(
            "every layer builds the MoE block: the reference's per-layer choice of a dense"
            " feed-forward, its class, checkpoint rows and layer rule are removed"
        ),
        reached_by=("decoder_sparse_step", "mlp_only_layers", "first_k_dense_replace"),
    ),
]
