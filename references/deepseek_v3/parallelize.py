"""The deepseek_v3 shard plan over a DeviceMesh (`tp`, `dp_shard`, `ep`).

MLA under tensor parallelism: the low-rank down-projections (`wq_a`, `wkv_a`) and their
latent norms are replicated, so every rank holds the whole latent and the one RoPE key
every head shares (its gradient summed over the ranks' heads); the per-head up-projections
(`wq_b` or `wq`, `wkv_b`) are column-wise, so each rank expands only its own heads, and
`wo` is row-wise. Dense SwiGLUs are column-wise gate/up, row-wise down. FSDP2 shards each
block, then the root.

MoE layers: the shared experts' SwiGLUs are split as the dense ones; the router (with its
correction bias) is replicated; the stacked routed experts are split over `ep` by expert
(tokens dispatched and combined by all-to-all), or over `tp` by their hidden dim (every
rank seeing every token, the partial outputs summed).
"""

from __future__ import annotations

from codegen.layers.parallel import apply_plan

PLAN = {
    "tok_embeddings": "vocab_embedding",
    "layers.*.attention_norm": "replicate",
    "layers.*.attention.wq": "colwise",
    "layers.*.attention.wq_a": "replicate",
    "layers.*.attention.q_norm": "replicate",
    "layers.*.attention.wq_b": "colwise",
    "layers.*.attention.wkv_a": "rope_key_tail",
    "layers.*.attention.kv_norm": "replicate",
    "layers.*.attention.wkv_b": "colwise",
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
    "layers.*.moe.shared_experts.w1": "colwise",
    "layers.*.moe.shared_experts.w3": "colwise",
    "layers.*.moe.shared_experts.w2": "rowwise",
    "norm": "replicate",
    "output": "vocab_head",
}
FSDP_BLOCKS = ("layers.*",)
# entries a config switch leaves without a match: q-LoRA (`q_lora_rank`) picks wq or
# wq_a/q_norm/wq_b; `first_k_dense_replace` may leave no dense layer
OPTIONAL = frozenset(
    {
        "layers.*.attention.wq",
        "layers.*.attention.wq_a",
        "layers.*.attention.q_norm",
        "layers.*.attention.wq_b",
        "layers.*.feed_forward.w1",
        "layers.*.feed_forward.w3",
        "layers.*.feed_forward.w2",
    }
)


def parallelize(model, mesh, plan: dict[str, str] | None = None):
    """Shard `model` in place over `mesh` (dims `tp`, `dp_shard`, `ep`; absent = 1)."""
    return apply_plan(model, mesh, PLAN if plan is None else plan, FSDP_BLOCKS, OPTIONAL)
