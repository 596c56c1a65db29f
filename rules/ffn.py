"""Rules for the dense feed-forward: its bias, kind and activation, a fused gate/up projection.

Rows run in this order: the bias first (set_ffn_bias maps gate/up/down biases; a later
ungated kind drops the up rows and moves the gate rows to up_proj, a later fusion moves
them to the fused tensor), then the kind, then the fusion.
"""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="ffn_bias",
        feature="ffn.bias",
        values=(True,),
        transform="set_ffn_bias",
        params={"enabled": FromFeature("ffn.bias")},
        description="the feed-forward projections carry biases (mapped from the checkpoint)",
        fixes="mlp_bias",
        bias_of=("gate_proj", "up_proj", "down_proj"),
    ),
    Rule(
        id="ffn_geglu",
        feature="ffn.kind",
        values=("geglu",),
        transform="set_ffn_kind",
        params={"kind": "geglu", "activation": FromFeature("ffn.activation")},
        description="gated MLP with a GELU variant on the gate: w2(gelu(w1(x)) * w3(x))",
    ),
    Rule(
        id="ffn_glu",
        feature="ffn.kind",
        values=("glu",),
        transform="set_ffn_kind",
        params={"kind": "glu", "activation": FromFeature("ffn.activation")},
        description="gated MLP with another activation on the gate: w2(act(w1(x)) * w3(x))",
    ),
    Rule(
        id="ffn_gelu_mlp",
        feature="ffn.kind",
        values=("gelu_mlp",),
        transform="set_ffn_kind",
        params={"kind": "gelu_mlp", "activation": FromFeature("ffn.activation")},
        description="ungated 2-layer MLP w2(act(w1(x))) (c_fc -> act -> c_proj)",
    ),
    Rule(
        id="ffn_mlp",
        feature="ffn.kind",
        values=("mlp",),
        transform="set_ffn_kind",
        params={"kind": "mlp", "activation": FromFeature("ffn.activation")},
        description="ungated 2-layer MLP with another activation: w2(relu(w1(x))) (OPT fc1/fc2)",
    ),
    Rule(
        id="ffn_relu2",
        feature="ffn.kind",
        values=("relu2",),
        transform="set_ffn_kind",
        params={"kind": "relu2", "activation": FromFeature("ffn.activation")},
        description="ungated 2-layer MLP with a squared ReLU: w2(relu(w1(x)) ** 2)",
    ),
    Rule(
        id="ffn_xielu",
        feature="ffn.kind",
        values=("xielu_mlp",),
        transform="set_xielu_mlp",
        description="ungated 2-layer MLP with xIELU (slopes learned per layer): w2(xielu(w1(x)))",
    ),
    Rule(
        id="ffn_sub_norm",
        feature="ffn.sub_norm",
        values=(True,),
        transform="add_sub_norm",
        params={"site": "ffn"},
        description="a norm over the inner activations before the down projection (bitnet)",
    ),
    Rule(
        id="fused_gate_up",
        feature="ffn.fused_gate_up",
        values=(True,),
        transform="fuse_gate_up",
        params={"layout": FromFeature("ffn.gate_up_layout")},
        description="gate and up in one w13 projection (one checkpoint tensor), split by layout",
    ),
    Rule(
        id="ffn_gated_product_fp32",
        feature="ffn.act_fp32",
        values=(True,),
        transform="gated_product_fp32",
        params={"module": "FeedForward"},
        description=(
            "the MLP's gated product in fp32, rounded back once: (silu(g.float()) * u.float())"
            ".to(x.dtype) (beam)"
        ),
    ),
    Rule(
        # after the kind and bias rules: the shared expert copies the dense SwiGLU's lines
        id="product_key_experts",
        feature="ffn.product_keys",
        values=(True,),
        transform="product_key_experts",
        params={"keys": FromFeature("ffn.product_keys")},
        description=(
            "where a bool config switch says so, the MLP becomes a shared SwiGLU plus"
            " product-key experts (rows of two embedding tables, a two-half key router):"
            " doge's CDMoE"
        ),
    ),
    Rule(
        id="ffn_output_gain",
        feature="ffn.output_gain",
        values=(True,),
        transform="ffn_output_gain",
        params={"gain": FromFeature("ffn.output_gain")},
        description=(
            "the dense MLP's output times a learned one-element gain of its own, starting at"
            " one (inkling's global_scale)"
        ),
    ),
    Rule(
        # after the kind rules: the gate it thresholds is the activation's argument
        id="activation_sparsity",
        feature="ffn.activation_sparsity",
        values=(True,),
        transform="activation_sparsity",
        params={"sparsity": FromFeature("ffn.activation_sparsity")},
        description=(
            "the gate keeps only its values above mean + k * std of each row before the"
            " activation, k the normal quantile of the layer's target sparsity (gemma3n)"
        ),
    ),
    Rule(
        id="layer_ffn_widths",
        feature="ffn.layer_widths",
        values=(True,),
        transform="layer_ffn_widths",
        params={"field": FromFeature("ffn.layer_widths")},
        description="each layer's FFN as wide as its entry of a config list (gemma3n)",
    ),
]
