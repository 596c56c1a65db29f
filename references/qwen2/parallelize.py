"""The qwen2 shard plan over a DeviceMesh (`tp`, `dp_shard`).

Column-wise q/k/v (their biases split with them) and gate/up, row-wise o and down, the
embedding and the output head split over the vocabulary (logits gathered), norms
replicated; FSDP2 shards each block, then the root. `apply_plan` checks the table against
the model before sharding anything.
"""

from __future__ import annotations

from codegen.layers.parallel import apply_plan

PLAN = {
    "tok_embeddings": "vocab_embedding",
    "layers.*.attention_norm": "replicate",
    "layers.*.attention.wq": "colwise",
    "layers.*.attention.wk": "colwise_kv",
    "layers.*.attention.wv": "colwise_kv",
    "layers.*.attention.wo": "rowwise",
    "layers.*.ffn_norm": "replicate",
    "layers.*.feed_forward.w1": "colwise",
    "layers.*.feed_forward.w3": "colwise",
    "layers.*.feed_forward.w2": "rowwise",
    "norm": "replicate",
    "output": "vocab_head",
}
FSDP_BLOCKS = ("layers.*",)
OPTIONAL: frozenset[str] = frozenset()  # entries a config switch may leave unmatched


def parallelize(model, mesh, plan: dict[str, str] | None = None):
    """Shard `model` in place over `mesh` (dims `tp`, `dp_shard`; absent = 1), returned."""
    return apply_plan(model, mesh, PLAN if plan is None else plan, FSDP_BLOCKS, OPTIONAL)
