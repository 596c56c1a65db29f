"""Rules for layer kinds whose token mixer is not attention (run after every attention edit)."""

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
]
