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
]
