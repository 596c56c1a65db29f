"""Rules for rotary position embeddings: partial rotary, the rope_parameters group the layers
pick, interleaved pairs, the trailing slice turned, a fixed NTK alpha, sin/cos read from a
position table the checkpoint stores."""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="partial_rotary",
        feature="rope.partial_rotary",
        values=("partial",),
        transform="partial_rotary",
        description="only the leading int(head_dim * partial_rotary_factor) dims of q/k rotate",
        native_in=("deepseek_v3",),
        switch="partial_rotary_factor",
    ),
    Rule(
        id="rope_group",
        feature="rope.group",
        values=(True,),
        transform="rope_group",
        params={"group": FromFeature("rope.group")},
        description=(
            "the rope parameters are the rope_parameters group the attention layers pick"
            " (DeepSeek-V4's 'main' / 'compress' labels), not the flat dict"
        ),
    ),
    Rule(
        # after rope_group: `rope` is the first layer's group
        id="rope_layer_groups",
        feature="rope.layer_groups",
        values=(True,),
        transform="rope_layer_groups",
        params={"groups": FromFeature("rope.layer_groups")},
        description=(
            "the layers rotate with one of two rope_parameters groups each, picked by a test"
            " over the config and the layer index: a second table for the other group"
        ),
    ),
    Rule(
        id="layer_rope_bases",
        feature="rope.layer_bases",
        values=(True,),
        transform="layer_rope_bases",
        params={"bases": FromFeature("rope.layer_bases")},
        description=(
            "each layer reads its RoPE base from a config list: a table per distinct nonzero"
            " base, each layer rotating with its own base's; a 0 entry applies no RoPE there"
        ),
    ),
    Rule(
        id="interleaved_rope",
        feature="rope.interleaved",
        values=(True,),
        transform="interleaved_rope",
        description="q/k rotate in adjacent pairs (x0, x1), (x2, x3), ... (glm4 / cohere)",
        native_in=("deepseek_v3",),
    ),
    Rule(
        id="trailing_rotary",
        feature="rope.rotated_slice",
        values=("trailing",),
        transform="trailing_rotary",
        description=(
            "a partial rotary turns the trailing rotary_dim dims of each head, the leading ones"
            " pass ([passed | rotated]: DeepSeek-V4's [nope | rope])"
        ),
    ),
    Rule(
        id="ntk_alpha_rope",
        feature="rope.ntk_alpha",
        values=(True,),
        transform="ntk_alpha_rope",
        params={"key": FromFeature("rope.ntk_alpha")},
        description=(
            "a 'dynamic' rope with a fixed alpha: base * alpha ** (d / (d - 2)) once (HunYuan),"
            " not the sequence-length NTK"
        ),
    ),
    Rule(
        id="rope_table",
        feature="rope.table",
        values=(True,),
        transform="rope_table",
        params={"table": FromFeature("rope.table")},
        description="cos/sin are rows of the checkpoint's [sin | cos] table, by index (RoFormer)",
    ),
]
