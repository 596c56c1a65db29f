"""How the modules a rule's transform adds are sharded: the shard-plan side of the table.

A reference's `parallelize.py` holds its plan (module path pattern -> style, see
`codegen/layers/parallel.py`). A transform that adds a module says here how it is split;
`scaffold` writes these entries into the generated package's plan (`sync_shard_plan`), and
drops the entries whose modules the transforms removed. A transform that adds a module and
has no row here leaves it out of the plan, so applying the plan fails loudly, naming it.

Each row: the transform, the parameter values it must have been given (empty: any), the plan
entries it adds, and the entries a config switch may leave without a match (`optional`); a
transform that names modules after the HF source (RoCBert's side tables) lists them in one
of its parameters, `each_of`, and each joins the plan under its name with the style `each`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Shards:
    transform: str
    adds: dict[str, str]
    when: dict[str, object] = field(default_factory=dict)
    optional: tuple[str, ...] = ()
    # a step parameter listing modules by HF path (or tuples whose first item is one): each
    # is added under its last segment, the house name the transform gives it, as `each`
    each_of: str = ""
    each: str = "replicate"

    def entries(self, params: dict) -> dict[str, str]:
        """The plan entries this row adds for a step with `params`."""
        listed = params.get(self.each_of, ()) if self.each_of else ()
        paths = [item[0] if isinstance(item, tuple | list) else item for item in listed]
        return {**self.adds, **{str(path).rsplit(".", 1)[-1]: self.each for path in paths}}


_INDEXER_PARTS = (
    "compressor.wkv",
    "compressor.wgate",
    "compressor.slot_bias",
    "compressor.norm",
    "wq_b",
    "weights_proj",
)
_COMPRESSED_KV = {
    "layers.*.attention.compressor.wkv": "replicate",
    "layers.*.attention.compressor.wgate": "replicate",
    "layers.*.attention.compressor.slot_bias": "replicate",
    "layers.*.attention.compressor.norm": "shared_key_norm",
    # the indexer (on the compressed sparse layers) picks entries for every head: whole on
    # every rank; its choice carries no gradient
    **{f"layers.*.attention.indexer.{part}": "replicate" for part in _INDEXER_PARTS},
}
_EXPERTS = {
    "layers.*.moe.gate": "replicate",
    "layers.*.moe.experts": "experts",
    "layers.*.moe.experts.w1": "expert_colwise",
    "layers.*.moe.experts.w3": "expert_colwise",
    "layers.*.moe.experts.w2": "expert_rowwise",
}
_PER_LAYER = {
    name: "replicate"
    for name in (
        "per_layer_embeddings",
        "per_layer_projection",
        "per_layer_projection_norm",
        "layers.*.per_layer_gate",
        "layers.*.per_layer_up",
        "layers.*.per_layer_norm",
    )
}
# the routed experts beside the dense MLP (enable_moe_block), absent where it is off
_PARALLEL_MOE = {
    "layers.*.moe.router": "replicate",  # its per-channel and per-expert scales
    "layers.*.moe.router.proj": "replicate",
    "layers.*.moe.experts": "experts",
    "layers.*.moe.experts.w13": "expert_colwise_gate_up",
    "layers.*.moe.experts.w2": "expert_rowwise",
    "layers.*.moe_norm": "replicate",
    "layers.*.post_dense_norm": "replicate",
    "layers.*.post_moe_norm": "replicate",
}
_PRODUCT_KEY_PARTS = ("router", "down_embed", "up_embed")
_DENSE = ("layers.*.feed_forward.w1", "layers.*.feed_forward.w3", "layers.*.feed_forward.w2")

SHARDS = [
    Shards(
        "set_qk_norm",
        {
            "layers.*.attention.q_norm": "per_head_norm",
            "layers.*.attention.k_norm": "per_head_norm",
        },
        when={"kind": "per_head"},
    ),
    Shards(
        "set_qk_norm",
        {"layers.*.attention.q_norm": "sharded_norm", "layers.*.attention.k_norm": "sharded_norm"},
        when={"kind": "full"},
    ),
    *(
        Shards(
            "set_norm_placement",
            {"layers.*.post_attention_norm": "replicate", "layers.*.post_ffn_norm": "replicate"},
            when={"placement": placement},
        )
        for placement in ("post", "post_residual", "sandwich")
    ),
    # the dense feed-forward stays on the layers the dense rule keeps (maybe none), and a
    # config may keep no MoE layer at all (a sparse step with `num_experts=0`)
    Shards("add_moe", _EXPERTS, optional=(*_DENSE, *_EXPERTS)),
    Shards("parallel_moe", _PARALLEL_MOE, optional=tuple(_PARALLEL_MOE)),
    Shards(
        "add_shared_experts",
        {
            "layers.*.moe.shared_experts.w1": "colwise",
            "layers.*.moe.shared_experts.w3": "colwise",
            "layers.*.moe.shared_experts.w2": "rowwise",
        },
        optional=tuple(f"layers.*.moe.shared_experts.w{i}" for i in (1, 3, 2)),
    ),
    Shards(
        "add_moe_output_norm", {"layers.*.moe.norm": "replicate"}, optional=("layers.*.moe.norm",)
    ),
    Shards(
        "add_shared_expert_gate",
        {"layers.*.moe.shared_expert_gate": "replicate"},
        optional=("layers.*.moe.shared_expert_gate",),
    ),
    # the parallel layout (a config switch) builds no second norm
    Shards("parallel_residual_switch", {}, optional=("layers.*.ffn_norm",)),
    Shards("add_attention_sinks", {"layers.*.attention.sinks": "head_param"}),
    # a logit per head from each token's input: each rank projects its own heads' sinks
    Shards("token_sinks", {"layers.*.attention.wsink": "colwise"}),
    # the clips' learned scales hold a row per head: each rank keeps its heads' rows (the
    # entries of clips the attention does not build are dropped from the plan)
    Shards(
        "l2_clips",
        {
            "layers.*.attention.q_clip.scale": "head_param",
            "layers.*.attention.k_clip.scale": "head_param",
            "layers.*.attention.rel_clip.scale": "head_param",
        },
    ),
    # the indexer scores every key with heads of its own: whole on every rank, its mask
    # applies to whichever attention heads the rank holds
    Shards(
        "indexed_attention",
        {
            f"layers.*.attention.indexer.{part}": "replicate"
            for part in ("wq_b", "wk", "k_norm", "weights_proj")
        },
    ),
    # a normed rope key: its gradient is summed after the norm, not at the projection's tail
    Shards(
        "k_rope_norm",
        {
            "layers.*.attention.wkv_a": "replicate",
            "layers.*.attention.k_pe_norm": "shared_key_norm",
        },
    ),
    # a score bias made from the values: each rank's kv heads' features in, the summed
    # per-head bias cut to its own heads, its per-head scale split with them
    Shards(
        "dynamic_mask",
        {
            "layers.*.attention.bias_proj": "rowwise_head_slice",
            "layers.*.attention.bias_scale": "head_param",
        },
    ),
    # learned stream weights multiply the replicated residual stream: whole on every rank
    Shards(
        "residual_scale",
        {"layers.*.attention_residual": "replicate", "layers.*.ffn_residual": "replicate"},
        when={"form": "learned_stream"},
    ),
    # the residual adds' per-channel maps act on the replicated residual stream: whole on
    # every rank
    Shards(
        "residual_affine",
        {"layers.*.attention_residual": "replicate", "layers.*.ffn_residual": "replicate"},
    ),
    # the router MLP and its carried state: small, whole on every rank (as the gate is)
    Shards(
        "router_mlp",
        {
            f"layers.*.moe.router{part}": "replicate"
            for part in ("", ".down", ".norm", ".fc1", ".fc2", ".fc3", ".out")
        },
        optional=("layers.*.moe.router.fc2", "layers.*.moe.router.fc3"),  # 1-3 hidden layers
    ),
    # the table-routed layers' gate sits where the Gate does: whole on every rank, its
    # token-id table (an integer buffer) too, so each rank looks up every token's experts
    Shards("table_routing", {"layers.*.moe.gate": "replicate"}),
    # the full layers' query, key and value norms act on the replicated residual stream, as
    # the attention norm they stand for does (that one only on the sliding layers)
    Shards(
        "layer_kv_inputs",
        {f"layers.*.{norm}": "replicate" for norm in ("query_norm", "key_norm", "value_norm")},
    ),
    # the embeddings' per-channel shift and scale act on the replicated embeddings
    Shards("embedding_affine", {"embedding_affine": "replicate"}),
    # hyper-connections read and write the replicated residual streams: small, whole on
    # every rank (their projection spans every stream's every channel)
    Shards(
        "hyper_connections",
        {
            "layers.*.attention_hc": "replicate",
            "layers.*.ffn_hc": "replicate",
            "stream_collapse": "replicate",
        },
    ),
    # product-key experts: the SwiGLU keeps the dense plan; router and expert rows whole
    # (built only where the config switches them on)
    Shards(
        "product_key_experts",
        {f"layers.*.feed_forward.{part}": "replicate" for part in _PRODUCT_KEY_PARTS},
        optional=tuple(f"layers.*.feed_forward.{part}" for part in _PRODUCT_KEY_PARTS),
    ),
    # a gated norm's RMSNorm and gate matrices are replicated like the norm itself; which
    # block norms a target gates varies, so every entry may match nothing
    Shards(
        "gated_norm",
        {
            f"layers.*.{norm}.{part}": "replicate"
            for norm in ("attention_norm", "ffn_norm")
            for part in ("norm", "w1", "w2")
        },
        optional=tuple(
            f"layers.*.{norm}.{part}"
            for norm in ("attention_norm", "ffn_norm")
            for part in ("norm", "w1", "w2")
        ),
    ),
    # the gate's features follow the heads of the column-wise q projection
    Shards(
        "add_output_gate",
        {"layers.*.attention.wg": "colwise", "layers.*.attention.gate_bias": "head_param"},
        optional=("layers.*.attention.gate_bias",),
    ),
    # AltUp's router and coefficients read whole streams and mix the streams per token;
    # small, whole on every rank, as the projections in and out of the streams
    Shards(
        "altup",
        {
            "layers.*.altup": "replicate",  # its output scale
            **{
                f"layers.*.altup.{part}": "replicate"
                for part in ("correction", "prediction", "router", "router_norm")
            },
            "altup_in.*": "replicate",
            "altup_out.*": "replicate",
        },
    ),
    # per-layer inputs: the second table, its mixing and each layer's gate are replicated
    # (the switch may build none of them)
    Shards(
        "per_layer_inputs",
        _PER_LAYER,
        optional=tuple(_PER_LAYER),
    ),
    # language adapters: each language's bottleneck FFN split as the FFN (column-wise down to
    # the bottleneck, row-wise back); the adapters' own norm whole (a switch may build none)
    Shards(
        "language_adapters",
        {
            "layers.*.adapters.*.w1": "colwise",
            "layers.*.adapters.*.w2": "rowwise",
            "layers.*.adapter_norm": "replicate",
        },
        optional=("layers.*.adapter_norm",),
    ),
    Shards("learned_positions", {"pos_embeddings": "replicate"}),
    Shards("embedding_norm", {"embedding_norm": "replicate"}),
    # BERT's embeddings module: one token-type row and the norm of the summed tables
    Shards(
        "embedding_module",
        {
            "token_type_embeddings": "replicate",
            "embedding_norm": "replicate",
            "embedding_proj": "replicate",
        },
    ),
    # side tables (RoCBert's shape and pronunciation, named as HF names them) and the layer
    # mapping their concatenation to dim, whole on every rank: the projection is built only
    # under its switch
    Shards(
        "side_tables",
        {"concat_proj": "replicate"},
        optional=("concat_proj",),
        each_of="tables",
    ),
    # BERT's prediction head: the dense and norm before the vocabulary projection, whole
    Shards("head_transform", {"head_dense": "replicate", "head_norm": "replicate"}),
    # a sub-norm spans every feature of the column-wise shards it follows (all heads, or the
    # whole inner width): its weight split like them, the mean of squares summed over ranks
    # the query's latent is whole on every rank; its up-projection splits by heads (each
    # head's weightless norm then sees its own features)
    Shards(
        "low_rank_q",
        {
            "layers.*.attention.wq_a": "replicate",
            "layers.*.attention.q_a_norm": "replicate",
            "layers.*.attention.wq_b": "colwise",
        },
    ),
    # the compressed entries join the key every head reads (one key head): the compressor
    # whole on every rank, the gradient of its normed entries summed over the ranks' heads
    # (a layer pattern without compressed layers, a switch setting, builds none of it)
    Shards(
        "compressed_kv",
        _COMPRESSED_KV,
        optional=tuple(_COMPRESSED_KV),
    ),
    Shards(
        "grouped_output",
        {"layers.*.attention.wo_a": "grouped_colwise", "layers.*.attention.wo_b": "rowwise"},
    ),
    Shards("add_sub_norm", {"layers.*.attention.sub_norm": "sharded_norm"}, {"site": "attention"}),
    Shards("add_sub_norm", {"layers.*.feed_forward.sub_norm": "sharded_norm"}, {"site": "ffn"}),
    # differential attention pairs head i with head n/2 + i and splits every value head in
    # two: a split by heads would part the pairs, so its attention stays whole on every rank
    Shards(
        "differential_attention",
        {
            "layers.*.attention": "replicate",  # its own lambda vectors
            **{f"layers.*.attention.{w}": "replicate" for w in ("wq", "wk", "wv", "wo")},
        },
    ),
    # the convolutional projection: the value heads are whole heads of the current and of the
    # previous token's projection (the first and the second half of the heads), so a split by
    # heads would give one rank only current heads, another only delayed ones, while the two
    # projections split alike give every rank half of each; the attention stays whole on
    # every rank, as its per-kv-head key scale where it has one
    Shards(
        "conv_qkv_projection",
        {
            "layers.*.attention": "replicate",
            **{
                f"layers.*.attention.{w}": "replicate"
                for w in ("wq", "wk", "wv", "wv_delayed", "wo", "qk_conv.depthwise")
            },
            "layers.*.attention.qk_conv.grouped": "replicate",
        },
    ),
    # routed attention: a token's heads are its picked experts' slots and each slot's output
    # goes through that expert's whole output projection, so the attention stays whole
    Shards(
        "routed_attention",
        {
            "layers.*.attention": "replicate",  # its own stacked experts and output bias
            "layers.*.attention.router": "replicate",
            "layers.*.attention.wkv": "replicate",
            "layers.*.attention.wq": "replicate",  # stacked [experts, out, in] parameters
            "layers.*.attention.wo": "replicate",
        },
    ),
    # the bias a MoE adds to its merged (all-reduced) output: whole on every rank
    Shards("moe_projections", {"layers.*.moe": "replicate"}),
    # a short-conv layer's filter mixes every channel of the replicated residual stream: the
    # whole mixer stays on every rank; a config may have no such layer, or no attention one
    Shards(
        "short_conv_layers",
        {f"layers.*.conv.{name}": "replicate" for name in ("in_proj", "conv", "out_proj")},
        optional=(
            *(f"layers.*.conv.{name}" for name in ("in_proj", "conv", "out_proj")),
            *(
                f"layers.*.attention.{name}"
                for name in ("wq", "wk", "wv", "wo", "wqkv", "q_norm", "k_norm")
            ),
        ),
    ),
    # the filters over the k and v projections hold the rows their projection holds; the
    # filters over the attention's and the FFN's outputs act on the replicated residual
    # stream: whole on every rank
    Shards(
        "kv_convs",
        {
            "layers.*.attention.k_conv.conv": "filter_rows",
            "layers.*.attention.v_conv.conv": "filter_rows",
        },
        optional=("layers.*.attention.k_conv.conv", "layers.*.attention.v_conv.conv"),
    ),
    # the full layers' per-token filters: a head's taps go with the head's rows of the k or v
    # projection (the fixed taps by channel, the token taps' linear by head); the sliding
    # layers have none
    Shards(
        "layer_kv_convs",
        {
            **{f"layers.*.attention.{x}_conv.tap_proj": "token_filter" for x in "kv"},
            **{f"layers.*.attention.{x}_conv.weight": "token_filter_taps" for x in "kv"},
        },
    ),
    # the low-rank branch is an MLP in miniature: its rank split over the ranks, its output
    # summed back whole before the norm, which every rank holds
    Shards(
        "low_rank_branch",
        {
            "layers.*.branch.down": "colwise",
            "layers.*.branch.up": "rowwise",
            "layers.*.branch.norm": "replicate",
        },
    ),
    Shards(
        "output_convs",
        {"layers.*.attention_conv.conv": "replicate", "layers.*.ffn_conv.conv": "replicate"},
        optional=("layers.*.attention_conv.conv", "layers.*.ffn_conv.conv"),
    ),
    # the depth attentions read whole hidden vectors of the replicated stream: their queries
    # whole on every rank (the first layer builds no attention_input)
    Shards(
        "attention_residuals",
        {
            "layers.*.attention_input": "replicate",
            "layers.*.ffn_input": "replicate",
            "final_input": "replicate",
        },
        optional=("layers.*.attention_input",),
    ),
    # the MLP's output gain multiplies its summed (row-wise) output: whole on every rank
    # (absent where mlp_layer_types makes every layer a MoE)
    Shards(
        "ffn_output_gain",
        {"layers.*.feed_forward.gain": "replicate"},
        optional=("layers.*.feed_forward.gain",),
    ),
    # the router's gain scales the weights every rank computes from the replicated router;
    # the scored shared experts are few and small beside the routed ones: whole on every rank
    # (both absent where every layer is dense)
    Shards(
        "router_gain",
        {"layers.*.moe.router_gain": "replicate"},
        optional=("layers.*.moe.router_gain",),
    ),
    Shards(
        "scored_shared_experts",
        {"layers.*.moe.shared_experts": "replicate"},
        optional=("layers.*.moe.shared_experts",),
    ),
    # the relative bias: each head's states follow its q rows; the table every head mixes
    # is whole on every rank, its gradient summed over the ranks' heads
    Shards(
        "relative_position_bias",
        {"layers.*.attention.wr": "colwise", "layers.*.attention.rel_bias": "per_head_shared"},
    ),
    # ALiBi's bias has one entry per head: each rank keeps its heads'
    Shards("alibi", {"layers.*.attention.alibi": "head_slice"}),
    # the Gaussian top-k thresholds the gate at statistics over all its features: a rank
    # holding a column slice would take its own slice's mean and std, so the FFN stays whole
    Shards("activation_sparsity", {name: "replicate" for name in _DENSE}),
    # xIELU's learned slopes act on the column-wise up projection's local features
    Shards("set_xielu_mlp", {"layers.*.feed_forward.act": "sharded_elementwise"}),
    # [gate | up] halves: a strided shard; alternating gate/up rows: a plain column split
    # the FeedForward class is also the shared expert's; an all-MoE config builds no dense one
    *(
        Shards(
            "fuse_gate_up",
            {"layers.*.feed_forward.w13": style, "layers.*.moe.shared_experts.w13": style},
            when={"layout": layout},
            optional=("layers.*.feed_forward.w13", "layers.*.moe.shared_experts.w13"),
        )
        for layout, style in (("concat", "colwise_gate_up"), ("interleaved", "colwise"))
    ),
    # fused q/k/v: each rank holds its q heads' rows and its kv heads' k and v rows (a kv
    # head several ranks read is held by each); rows per head (q, k, v of one head) split
    # as they lie
    Shards("fuse_qkv", {"layers.*.attention.wqkv": "colwise_qkv"}, when={"layout": "contiguous"}),
    Shards(
        "fuse_qkv", {"layers.*.attention.wqkv": "colwise_qkv_grouped"}, when={"layout": "grouped"}
    ),
    Shards("fuse_qkv", {"layers.*.attention.wqkv": "colwise"}, when={"layout": "interleaved"}),
    # rows in blocks of q, k, v: the adapter regroups them to [q | k | v] on load
    Shards("fuse_qkv", {"layers.*.attention.wqkv": "colwise_qkv"}, when={"layout": "blocked"}),
    # fused experts: alternating gate/up features split as they lie, [gate | up] strided
    Shards(
        "fuse_experts",
        {"layers.*.moe.experts.w13": "expert_colwise"},
        when={"layout": "interleaved"},
        optional=("layers.*.moe.experts.w13",),
    ),
    Shards(
        "fuse_experts",
        {"layers.*.moe.experts.w13": "expert_colwise_gate_up"},
        when={"layout": "concat"},
        optional=("layers.*.moe.experts.w13",),
    ),
    # a per-expert bias follows its weight (the entries of weights the model lacks drop out)
    Shards(
        "set_expert_bias",
        {f"layers.*.moe.experts.{w}_bias": "expert_bias" for w in ("w1", "w3", "w13", "w2")},
        optional=tuple(f"layers.*.moe.experts.{w}_bias" for w in ("w1", "w3", "w13", "w2")),
    ),
]


def shards_of(transform: str, params: dict) -> list[Shards]:
    """The rows a step (transform + its parameters) brings into the plan."""
    return [
        row
        for row in SHARDS
        if row.transform == transform
        and all(params.get(key) == value for key, value in row.when.items())
    ]
