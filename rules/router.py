"""Rules for routers the deepseek_v3 reference's Gate is turned into (it is sigmoid, with a
correction bias and grouped top-k natively): DeepSeek-V2's softmax router with its
`topk_method` switch (greedy / group_limited_greedy), the MLA rope layout of configs
that have no `rope_interleave` switch, and a sigmoid top-k without expert groups.

Runs after the "moe" and "experts" groups. The `moe` group's `moe_router` row covers
routers of an `add_moe` block; these rows edit the deepseek_v3 `Gate` (the plan reaches
them only from deepseek_v3: every other reference routes with softmax top-k natively).
"""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="router_softmax_gate",
        feature="moe.router",
        values=("softmax_topk",),
        transform="set_softmax_gate",
        params={
            "grouped": "auto",
            "renormalize": "auto",
            "correction_bias": FromFeature("moe.router_bias"),
        },
        description=(
            "the MLA reference's sigmoid router becomes a softmax top-k, with a selection-only "
            "correction bias where the target has one (LongCat-Flash); DeepSeek-V2's "
            "topk_method picks greedy (one group) or group-limited greedy (groups scored by "
            "their best expert), read from the modeling source"
        ),
        native_in=("qwen3_moe",),
    ),
    Rule(
        # Carried by the router row: the planner compares no feature for "the config has no
        # rope_interleave switch" (every MLA model with a softmax router, i.e. DeepSeek-V2,
        # lacks it). A no-op where the target's config class has the switch.
        id="router_mla_rope_layout",
        feature="moe.router",
        values=("softmax_topk",),
        transform="fix_rope_layout",
        params={"interleaved": FromFeature("rope.interleaved"), "switch": "auto"},
        description=(
            "MLA rope layout fixed to the analysed one where the config has no "
            "rope_interleave switch (DeepSeek-V2 always rotates interleaved pairs)"
        ),
        native_in=("qwen3_moe",),
    ),
    Rule(
        # the reverse of moe_router_fp32, for the reference whose Gate projects in fp32;
        # before router_score_activation (it scores what this one upcasts or not)
        id="router_half_logits",
        feature="moe.router_fp32",
        values=(False,),
        transform="router_half_logits",
        params={"scores_fp32": FromFeature("moe.scores_fp32")},
        description=(
            "the MLA reference's Gate projects the router logits in the model's dtype (no"
            " fp32 casts of input and weight) and scores them upcast or not as HF does, so a"
            " bf16 model picks the experts HF picks (DeepSeek-V4's TopKRouter: bf16 scores)"
        ),
    ),
    Rule(
        # deepseek_v3's Gate picks inside the expert groups from_hf_config reads (n_group,
        # topk_group): a sigmoid top-k target whose source reads neither has no groups, and
        # no config of it reaches that code (its config may lack both fields)
        id="router_ungrouped_gate",
        feature="moe.router",
        values=("sigmoid_topk",),
        transform="ungrouped_gate",
        reached_by=("n_group", "topk_group"),
        description=(
            "the MLA reference's Gate picks the top k of all experts: no expert groups, so"
            " neither n_group nor topk_group is read (the correction bias still steers the pick)"
        ),
    ),
    Rule(
        id="router_score_activation",
        feature="moe.score_activation",
        values=(True,),
        transform="score_activation",
        params={"activation": FromFeature("moe.score_activation")},
        description=(
            "the sigmoid Gate scores by sqrt(softplus(logits)) instead (DeepSeek-V4's"
            " scoring_func); bias, pick, renormalisation and scaling unchanged"
        ),
    ),
    Rule(
        # after the router rows: the table-routed layers' gate computes its logits as the
        # Gate they write does
        id="table_routing",
        feature="moe.table_routing",
        values=(True,),
        transform="table_routing",
        params={"table": FromFeature("moe.table_routing")},
        description=(
            "on the MoE layers a per-layer config list types so, a fixed table indexed by"
            " the token ids picks the experts (the scores only weight them, renormalised and"
            " scaled); the token ids threaded from the model's forward (DeepSeek-V4's"
            " hash_moe layers)"
        ),
    ),
    Rule(
        # after every row that writes a renormalisation (add_moe, the router rows,
        # table_routing, product-key experts): it edits them all alike
        id="router_renorm_eps",
        feature="moe.norm_topk_eps",
        values=("none", "1e-20", "other"),
        transform="router_renorm_eps",
        params={"eps": FromFeature("moe.norm_topk_eps")},
        description=(
            "the router divides its k picked weights by their sum plus the number HF's"
            " source adds to it (1e-20, LFM2-MoE's 1e-6), or by the bare sum where it adds"
            " none"
        ),
    ),
    Rule(
        # after router_renorm_eps: it clamps the sum that rule leaves bare
        id="router_renorm_floor",
        feature="moe.norm_topk_floor",
        values=(True,),
        transform="router_renorm_floor",
        params={"floor": FromFeature("moe.norm_topk_floor")},
        description=(
            "the router divides its k picked weights by their sum clamped to at least a"
            " config value (Ernie-4.5's moe_norm_min), read by from_hf_config"
        ),
    ),
    Rule(
        # after the router rows and table_routing: it rewrites the scores they write
        id="router_score_switch",
        feature="moe.score_field",
        values=(True,),
        transform="score_switch",
        params={"field": FromFeature("moe.score_field"), "eps": FromFeature("moe.norm_topk_eps")},
        description=(
            "the router scores by the activation the config field its source looks the"
            " score function up by names (ACT2FN[config.scoring_func]): the sigmoid,"
            " sqrt(softplus(logits)), another activation, relu and its kin where the source"
            " adds a constant to the sum it renormalises by (which the package then adds),"
            " any other value refused"
        ),
    ),
    Rule(
        # after the router rows: it widens the Gate they write
        id="identity_experts",
        feature="moe.zero_experts",
        values=(True,),
        transform="identity_experts",
        params={"zero_experts": FromFeature("moe.zero_experts")},
        description=(
            "identity (zero-computation) experts scored and picked beside the routed ones: a"
            " token sent to one passes on times its weight; their unused checkpoint rows are"
            " dropped (LongCat-Flash's zero_expert_num)"
        ),
    ),
    Rule(
        # after the FFN and MoE rules (the block's sublayer calls are final), before
        # keep_fp32_params (it reads the adapter rows this adds)
        id="output_convs",
        feature="block.output_convs",
        values=(True,),
        transform="output_convs",
        params={"convs": FromFeature("block.output_convs")},
        description=(
            "causal depthwise convolutions over the attention's and the FFN's outputs, each"
            " added back to its input before the residual add (inkling's short convolutions)"
        ),
    ),
    Rule(
        # after output_convs (it rewrites the sums around the filtered sublayers), before
        # keep_fp32_params (the depth queries are kept in fp32)
        id="attention_residuals",
        feature="block.attention_residuals",
        values=(True,),
        transform="attention_residuals",
        params={"residuals": FromFeature("block.attention_residuals")},
        description=(
            "block attention residuals: each sublayer's input a learned query's attention over"
            " the block states (the inputs of the layers starting a block, every config-field"
            " layers) and the current state; one more before the final norm (inkling2)"
        ),
    ),
]
