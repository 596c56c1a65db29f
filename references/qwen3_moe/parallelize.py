"""The qwen3_moe shard plan over a DeviceMesh (`tp`, `dp_shard`, `ep`).

Attention as qwen3 (column-wise q/k/v, row-wise o, QK-norm over head_dim on each rank's
heads); dense layers' SwiGLU column-wise gate/up and row-wise down. The router is
replicated. The stacked routed experts are split over `ep` by expert (tokens dispatched
to their experts' ranks and combined by all-to-all), or over `tp` by their hidden dim
(every rank sees every token, the partial outputs are summed). FSDP2 shards each block,
then the root.
"""

from __future__ import annotations

from codegen.layers.parallel import apply_plan

PLAN = {
    "tok_embeddings": "vocab_embedding",
    "layers.*.attention_norm": "replicate",
    "layers.*.attention.wq": "colwise",
    "layers.*.attention.wk": "colwise_kv",
    "layers.*.attention.wv": "colwise_kv",
    "layers.*.attention.q_norm": "per_head_norm",
    "layers.*.attention.k_norm": "per_head_norm",
    "layers.*.attention.wo": "rowwise",
    "layers.*.ffn_norm": "replicate",
    "layers.*.feed_forward.w1": "colwise",
    "layers.*.feed_forward.w3": "colwise",
    "layers.*.feed_forward.w2": "rowwise",
    "layers.*.moe.gate": "replicate",
    "layers.*.moe.experts": "experts",
    "layers.*.moe.experts.w1": "expert_colwise",
    "layers.*.moe.experts.w3": "expert_colwise",
    "layers.*.moe.experts.w2": "expert_rowwise",
    "norm": "replicate",
    "output": "vocab_head",
}
FSDP_BLOCKS = ("layers.*",)
# entries a config may leave without a match: every layer MoE (no dense feed_forward), or
# num_experts=0 (every layer dense, no MoE)
OPTIONAL = frozenset(
    {
        "layers.*.feed_forward.w1",
        "layers.*.feed_forward.w3",
        "layers.*.feed_forward.w2",
        "layers.*.moe.gate",
        "layers.*.moe.experts",
        "layers.*.moe.experts.w1",
        "layers.*.moe.experts.w3",
        "layers.*.moe.experts.w2",
    }
)


def parallelize(model, mesh, plan: dict[str, str] | None = None):
    """Shard `model` in place over `mesh` (dims `tp`, `dp_shard`, `ep`; absent = 1)."""
    return apply_plan(model, mesh, PLAN if plan is None else plan, FSDP_BLOCKS, OPTIONAL)
