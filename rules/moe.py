"""Rules for mixture-of-experts feed-forwards: the MoE block itself and which layers get it,
the router (softmax / sigmoid / grouped top-k, correction bias, linear bias, scaling),
shared experts with or without their sigmoid gate.

Order matters: `add_moe` builds the block the other rows edit.
"""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="moe",
        feature="moe",
        values=(True,),
        transform="add_moe",
        params={"dense_rule": "auto", "norm_topk_prob": "auto"},
        description=(
            "the feed-forward becomes a softmax top-k routed MoE of stacked SwiGLU experts "
            "(grouped GEMMs) on the layers HF's condition selects; per-expert checkpoint keys"
        ),
        native_in=("qwen3_moe", "deepseek_v3"),
    ),
    Rule(
        # after `add_moe`: the attention's router reads the MoE's experts count and top_k
        id="routed_attention",
        feature="attention.routed",
        values=(True,),
        transform="routed_attention",
        params={"routed": FromFeature("attention.routed")},
        description=(
            "mixture of attention heads: a top-k router per token picks experts whose stacked"
            " query and output projections replace the dense ones; keys and values shared"
            " (JetMoE)"
        ),
    ),
    Rule(
        id="dense_ffn",
        feature="moe",
        values=(False,),
        transform="drop_moe",
        description=(
            "no experts: every layer keeps the dense feed-forward (a MoE reference's MoE block,"
            " router and expert rows removed)"
        ),
    ),
    Rule(
        # a MoE reference's own layer rule (qwen3_moe's decoder_sparse_step, deepseek_v3's
        # first_k_dense_replace) replaced by the target's; `add_moe` realises it on dense ones
        id="moe_layers",
        feature="moe.layer_condition",
        values=("condition", "first_k", "sparse_step"),
        transform="set_moe_layers",
        params={"condition": FromFeature("moe.layer_condition")},
        description=(
            "the layers HF's condition makes MoE (mlp_layer_types, an interval with start and "
            "end layers...) are chosen by ModelArgs.is_moe_layer evaluating the same condition "
            "over the same config fields"
        ),
    ),
    Rule(
        id="moe_router",
        feature="moe.router",
        values=("sigmoid_topk", "grouped_topk"),
        transform="set_moe_router",
        params={
            "router": FromFeature("moe.router"),
            "score_func": FromFeature("moe.score_func"),
            "correction_bias": FromFeature("moe.router_bias"),
            "bias_on": FromFeature("moe.router_bias_on"),
        },
        description=(
            "the router scores experts with softmax or sigmoid and picks the top k, "
            "optionally only inside the best groups (n_group / topk_group)"
        ),
        native_in=("qwen3_moe", "deepseek_v3"),
    ),
    Rule(
        id="moe_sparse_mixer",
        feature="moe.router",
        values=("sparsemixer",),
        transform="set_sparse_mixer",
        params={
            "picks": FromFeature("moe.top_k"),
            "jitter_field": FromFeature("moe.router_jitter"),
        },
        description=(
            "sparse-mixer routing (eval mode): chained max picks, each weighted by a softmax "
            "of the logits within a relative jitter gap of it (phimoe)"
        ),
    ),
    Rule(
        id="moe_router_bias",
        feature="moe.router_bias",
        values=(True,),
        transform="set_moe_router",
        params={
            "router": FromFeature("moe.router"),
            "score_func": FromFeature("moe.score_func"),
            "correction_bias": FromFeature("moe.router_bias"),
            "bias_on": FromFeature("moe.router_bias_on"),
        },
        description=(
            "a per-expert e_score_correction_bias steers which experts are picked, "
            "never their weights"
        ),
        native_in=("deepseek_v3",),
    ),
    Rule(
        id="moe_router_bias_logits",
        feature="moe.router_bias_on",
        values=("logits",),
        transform="set_moe_router",
        params={
            "router": FromFeature("moe.router"),
            "score_func": FromFeature("moe.score_func"),
            "correction_bias": FromFeature("moe.router_bias"),
            "bias_on": FromFeature("moe.router_bias_on"),
        },
        description="the selection bias is added to the raw logits, scored apart (kolibri1)",
    ),
    Rule(
        id="moe_routed_scaling",
        # needs the planner to compare `moe.routed_scaling` as present ("yes") / None ("no")
        feature="moe.routed_scaling",
        values=("yes",),
        transform="set_routed_scaling",
        params={"on": FromFeature("moe.routed_scaling_on")},
        description="the k routing weights (or, where the source scales them, the experts'"
        " summed output) are multiplied by routed_scaling_factor",
        native_in=("deepseek_v3",),
    ),
    Rule(
        id="moe_router_linear_bias",
        feature="moe.router_linear_bias",
        values=(True,),
        transform="set_router_linear_bias",
        description="the router projection itself carries a bias (gpt_oss)",
    ),
    Rule(
        # after moe_router_linear_bias: the fp32 projection passes the router's bias too
        id="moe_router_fp32",
        feature="moe.router_fp32",
        values=(True,),
        transform="set_router_fp32",
        description=(
            "the router projection runs in fp32 (input, weight and bias upcast), so a bf16 "
            "model scores and picks experts from unrounded logits as HF does"
        ),
        native_in=("deepseek_v3",),
    ),
    Rule(
        # after moe_router (it writes the scores) and moe_router_fp32
        id="moe_router_half_scores",
        feature="moe.scores_fp32",
        values=(False,),
        transform="router_half_scores",
        description=(
            "the router's sigmoid is taken in the logits' dtype and a selection bias added in"
            " fp32 (LFM2-MoE), so a bf16 model picks the experts HF picks"
        ),
    ),
    Rule(
        # after the router rules (it rewrites the `route` they write) and moe_router_fp32
        id="moe_scored_shared_experts",
        feature="moe.scored_shared",
        values=(True,),
        transform="scored_shared_experts",
        params={"shared": FromFeature("moe.scored_shared")},
        description=(
            "stacked shared SwiGLU experts the router scores with rows of its own past the"
            " routed experts': the picked and the shared sigmoid scores normalised together,"
            " each shared expert scaled by its weight, summed in fp32 (inkling)"
        ),
    ),
    Rule(
        # after moe_scored_shared_experts: it scales the weights the route returns
        id="moe_router_gain",
        feature="moe.router_gain",
        values=(True,),
        transform="router_gain",
        params={"gain": FromFeature("moe.router_gain")},
        description=(
            "the routing weights times a learned one-element gain of the router's, starting"
            " at one, in fp32 (inkling's gate.global_scale)"
        ),
    ),
    Rule(
        id="moe_layer_top_k",
        feature="moe.layer_top_k",
        values=(True,),
        transform="layer_top_k",
        params={"field": FromFeature("moe.layer_top_k")},
        description=(
            "each MoE layer picks its own number of experts per token where the config's"
            " field is an int or a per-layer list (hunyuan_v1_moe's moe_topk)"
        ),
    ),
    Rule(
        id="moe_layer_experts",
        feature="moe.layer_experts",
        values=(True,),
        transform="layer_experts",
        params={"field": FromFeature("moe.layer_experts")},
        description=(
            "each MoE layer routes among its own number of experts (router width, stacked"
            " expert weights) where the config's field is an int or a per-layer list"
            " (hunyuan_v1_moe's num_experts)"
        ),
    ),
    Rule(
        id="moe_shared_experts",
        feature="moe.shared_experts",
        values=("yes",),
        transform="add_shared_experts",
        params={"size": "auto"},
        description="an always-on shared SwiGLU expert is added to the routed output",
        native_in=("deepseek_v3",),
    ),
    Rule(
        id="moe_no_shared_experts",
        feature="moe.shared_experts",
        values=("no",),
        transform="drop_shared_experts",
        description="no shared expert: the MoE block returns the routed experts' output alone",
        native_in=("qwen3_moe",),
    ),
    Rule(
        id="moe_shared_width",
        feature="moe.shared_size",
        values=("own_field",),
        transform="shared_expert_width",
        params={"size": FromFeature("moe.shared_size")},
        description=(
            "the reference's shared expert sized as HF sizes it, from a width field of its own"
            " (shared_experts_intermediate_size x n_shared_experts), not the experts' width"
        ),
    ),
    Rule(
        # after moe_shared_experts: halves the sum it writes
        id="moe_shared_average",
        feature="moe.shared_combine",
        values=("average",),
        transform="average_shared_experts",
        description=(
            "the shared experts' output is averaged with the routed one, (routed + shared) / 2 "
            "(cohere2_moe)"
        ),
    ),
    Rule(
        # after the shared-expert rules: it normalises the sum they write
        id="moe_output_norm",
        feature="moe.output_norm",
        values=(True,),
        transform="add_moe_output_norm",
        params={"name": FromFeature("moe.output_norm")},
        description="the MoE block's output is normalised before the residual add (axk1)",
    ),
    Rule(
        id="moe_shared_expert_gate",
        feature="moe.shared_expert_gate",
        values=(True,),
        transform="add_shared_expert_gate",
        description="the shared expert's output is scaled by sigmoid(Linear(dim, 1)) (qwen2_moe)",
    ),
    Rule(
        id="moe_router_zero_init",
        feature="moe.router_zero_init",
        values=(True,),
        transform="zero_init_router",
        description="init_weights starts the router weight at zero, as HF's _init_weights does",
    ),
    Rule(
        # after the norm rules: the branch sits inside the FFN's post-norm they write
        id="parallel_moe",
        feature="block.parallel_moe",
        values=(),  # not a constant feature: realised wherever the source switches on it
        transform="parallel_moe",
        params={"parallel_moe": FromFeature("block.parallel_moe")},
        description=(
            "with enable_moe_block, routed GeGLU experts (fused gate/up; router: weightless norm"
            " x scale x dim**-0.5, fp32 softmax top-k renormalised x per-expert scale) run"
            " beside the dense MLP, each branch normed before and after, summed"
        ),
        switch="enable_moe_block",
    ),
]
