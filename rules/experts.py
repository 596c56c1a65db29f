"""Rules for the routed experts themselves: how the checkpoint lays them out, their biases,
their activation. They edit the `Experts` class the moe rows built (`add_moe`), so this
group runs after "moe"; so does the MLP's clamp (`ffn_clamped`), which the shared expert the
moe rows build must get too.

Order matters: the fused layout first (it decides the gate/up split and w13), then the
biases (one per expert product), then the activation (it rewrites `silu(gate) * up`).
"""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="experts_fused_layout",
        feature="moe.expert_layout",
        values=("fused",),
        transform="fuse_experts",
        params={"layout": FromFeature("ffn.gate_up_layout"), "transposed": "auto"},
        description=(
            "the experts are held as the checkpoint's fused 3-D tensors (gate_up_proj with "
            "gate/up interleaved or concatenated, down_proj), so they load 1:1"
        ),
    ),
    Rule(
        # after the fused layout: its w13/w2 rows are the ones keyed here
        id="moe_projections",
        feature="moe.projections",
        values=(True,),
        transform="moe_projections",
        params={"projections": FromFeature("moe.projections")},
        description=(
            "the MoE's router and stacked expert projections are keyed at the target's modules"
            " (JetMoE's router.layer, input_linear, output_linear), plus the bias it adds to"
            " its merged output"
        ),
    ),
    Rule(
        id="experts_flat_layout",
        feature="moe.expert_layout",
        values=("flat",),
        transform="flat_experts",
        description=(
            "each expert projection is one 2-D matrix with the experts' rows stacked (DBRX's"
            " w1/v1/w2, the down blocks stored [in, out]): split into the house's 3-D experts"
            " on load and flattened back on save, exactly"
        ),
    ),
    Rule(
        id="experts_bias",
        feature="moe.expert_bias",
        values=(True,),
        transform="set_expert_bias",
        description="each expert's projections carry a bias, added row by row to its products",
    ),
    Rule(
        id="experts_clamped_swiglu",
        # the analyzer names a sigmoid-gated product of clamped branches; the transform reads
        # the modeling source and refuses unless it is exactly the clamped SwiGLU
        feature="ffn.kind",
        values=("clamped_swiglu",),
        transform="set_clamped_swiglu",
        description=(
            "experts use gpt_oss's clamped SwiGLU: (up.clamp(-l, l) + 1) * g * sigmoid(alpha * g), "
            "g = gate.clamp(max=l)"
        ),
    ),
    Rule(
        id="experts_softcapped_swiglu",
        feature="ffn.kind",
        values=("softcapped_swiglu",),
        transform="set_softcapped_swiglu",
        params={"caps": FromFeature("ffn.softcaps")},
        description=(
            "experts use a softcapped SwiGLU: c_g * tanh(g / c_g) * sigmoid(g) * c_u *"
            " tanh(u / c_u), the sigmoid on the raw gate, caps from the config, in fp32 where"
            " the target upcasts (inkling2)"
        ),
    ),
    Rule(
        # here, after "moe": the shared expert the moe rows build (moe_shared_experts) is the
        # MLP at another width, so the clamp's limit reaches every FeedForward built by then
        id="ffn_clamped",
        feature="ffn.kind",
        values=("clamped_silu_glu",),
        transform="clamp_feed_forward",
        params={
            "limit": FromFeature("ffn.clamp"),
            "shared_unclamped": FromFeature("ffn.shared_unclamped"),
        },
        description=(
            "the dense and shared MLP clamp gate to <= limit and up to [-limit, limit] before"
            " silu(gate) * up; limit a config field (DeepSeek-V4's swiglu_limit); a shared"
            " expert of an unclamped class of its own stays unclamped; the routed experts'"
            " clamp is experts_clamped's"
        ),
    ),
    Rule(
        id="experts_clamped",
        feature="ffn.experts_clamp",
        values=(True,),
        transform="clamp_experts",
        params={"limit": FromFeature("ffn.experts_clamp")},
        description=(
            "the routed experts clamp gate to <= limit and up to [-limit, limit] before"
            " silu(gate) * up, in any expert layout; limit a config field (HY-V4 beside an"
            " unclamped dense MLP, DeepSeek-V4)"
        ),
    ),
    Rule(
        id="experts_weighted_inputs",
        feature="moe.weights_on",
        values=("input",),
        transform="weight_expert_inputs",
        description=(
            "the routing weight scales each token before its experts run, not their outputs "
            "(llama4_text)"
        ),
    ),
    Rule(
        id="experts_gated_product_fp32",
        feature="ffn.experts_act_fp32",
        values=(True,),
        transform="gated_product_fp32",
        params={"module": "Experts"},
        description=(
            "the routed experts' gated product in fp32, rounded back once: (silu(g.float()) *"
            " u.float()).to(x.dtype) (beam)"
        ),
    ),
]
