"""Routed attention: an attention module holding experts of its own.

JetMoE's mixture of attention heads keeps its query and output projections as per-expert
weights picked per token by a top-k router (keys and values shared). A package builds dense
attention, so such a model is reported unsupported with the routed module's path, instead of
as an attention whose projections and biases the analysis cannot name.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.model import layer_slots, walk_tree
from codegen.analyze.roles import ATTENTION, EXPERTS, MOE

# expert weights, not a router alone: a key selector's top-k scorer (DeepSeek sparse
# attention's indexer) routes keys, not projections
_ROUTED = (MOE, EXPERTS)


def detect(ctx: Ctx) -> None:
    for layer in ctx.model.layers:
        for name, attention in layer_slots(ctx.model, layer).get(ATTENTION, []):
            for path, rec in walk_tree(attention, name):
                if path != name and isinstance(rec, ModuleRec) and ctx.roles.role(rec) in _ROUTED:
                    ctx.unsupported(
                        "attention.routed",
                        f"mixture of attention heads: {path} routes each token's attention"
                        " projections among experts; packages build dense attention",
                        ctx.class_site(rec) or ctx.class_site(attention),
                    )
                    return
