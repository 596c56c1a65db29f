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
    ),
    Rule(
        id="o_bias",
        feature="attention.o_bias",
        values=(True,),
        transform="set_o_bias",
        params={"enabled": True},
        description="the attention output projection carries a bias",
    ),
]
