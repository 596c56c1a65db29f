"""Routed attention: an attention module holding experts of its own.

JetMoE's mixture of attention heads keeps its query and output projections as per-expert
weights picked per token by a top-k router; keys and values come from one shared projection.
Each token's query heads are the k picked experts' projections side by side (k times the
key/value heads, slot s's heads reading the shared key/value heads in order), and each slot's
attention output goes through the same expert's output projection, weighted by the router's
softmax over the k picked logits and summed, plus a bias.

What a package needs is read structurally into `attention.routed`, paths relative to the
attention module:

* `router`: the linear the routed module's router scores the experts with;
* `query`, `output`: the routed module's stacked projections ([experts, out, in] weights), in
  the order the attention's forward calls them (the query one before the key/value linear);
* `kv`: the attention's own linear whose output is split in two halves, keys then values;
* `bias`: the routed module's parameter added to the merged output, or None.

The router must pick the top-k logits first and softmax those (JetMoE's gating), and score as
many experts and pick as many as the MoE's router (a package reads one experts count and one
top-k for both); another form is "other", unsupported in one line (`rules/unsupported.py`).
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.model import layer_slots, walk_tree
from codegen.analyze.roles import ATTENTION, EXPERTS, LINEAR, MOE, ROUTER

OTHER = "other"
_FORM = "routes each token's attention projections among experts in another form"

# expert weights, not a router alone: a key selector's top-k scorer (DeepSeek sparse
# attention's indexer) routes keys, not projections
_ROUTED = (MOE, EXPERTS)


def detect(ctx: Ctx, moe=None) -> dict | None:
    """`attention.routed`; `moe` (the MoE facts) holds the experts count and top-k a package
    reads for both routers, so the attention's must agree with them."""
    for layer in ctx.model.layers:
        for name, attention in layer_slots(ctx.model, layer).get(ATTENTION, []):
            for path, rec in walk_tree(attention, name):
                if path != name and isinstance(rec, ModuleRec) and ctx.roles.role(rec) in _ROUTED:
                    found = read(ctx, attention, rec, path[len(name) + 1 :])
                    if found is not None and not _same_routing(ctx, rec, found, moe):
                        found = None
                    site = ctx.class_site(rec) or ctx.class_site(attention)
                    if found is None:  # in a form no rule builds
                        found = OTHER
                        site = f"{site} ({path}: {_FORM})"
                    ctx.cite("attention.routed", site)
                    return found
    return None


def read(ctx: Ctx, attention: ModuleRec, routed: ModuleRec, prefix: str) -> dict | None:
    """{"router", "query", "output", "kv", "bias"} (paths in the attention) or None."""
    if ctx.roles.role(routed) != MOE:
        return None
    experts = [n for n, c in routed.children() if _is(ctx, c, EXPERTS)]
    routers = [n for n, c in routed.children() if _is(ctx, c, ROUTER)]
    linears = [n for n, c in attention.children() if _is(ctx, c, LINEAR)]
    biases = [n for n, c in routed.children() if isinstance(c, ParamRec)]
    if len(experts) != 2 or len(routers) != 1 or len(linears) != 1 or len(biases) > 1:
        return None
    router = routed.attrs[routers[0]]
    scorer = [n for n, c in router.children() if _is(ctx, c, LINEAR)]
    if len(scorer) != 1 or not _top_k_then_softmax(ctx, router):
        return None
    # the forward: the query experts are called before the shared key/value linear, the
    # output experts after it (one record may stand for both when their sizes agree: their
    # attribute order is the order of the calls)
    calls = [
        ctx.roles.role(t.module)
        for t in ctx.trace(attention).terms
        if t.op == "call" and isinstance(t.module, ModuleRec)
    ]
    if calls.count(EXPERTS) != 2 or calls.count(LINEAR) != 1:
        return None
    first, kv_call, last = (
        calls.index(EXPERTS),
        calls.index(LINEAR),
        len(calls) - 1 - calls[::-1].index(EXPERTS),
    )
    if not first < kv_call < last:
        return None
    return {
        "router": f"{prefix}.{routers[0]}.{scorer[0]}",
        "query": f"{prefix}.{experts[0]}",
        "output": f"{prefix}.{experts[1]}",
        "kv": linears[0],
        "bias": f"{prefix}.{biases[0]}" if biases else None,
    }


def _same_routing(ctx: Ctx, routed: ModuleRec, found: dict, moe) -> bool:
    """The attention's router scores as many experts and picks as many as the MoE's."""
    if moe is None:
        return False
    scorer = routed
    for part in found["router"].split(".")[1:]:
        scorer = scorer.attrs.get(part) if isinstance(scorer, ModuleRec) else None
    if not isinstance(scorer, ModuleRec) or len(scorer.args) < 2:
        return False
    router = routed.attrs.get(found["router"].split(".")[1])
    top_k = router.attrs.get("top_k") if isinstance(router, ModuleRec) else None
    return scorer.args[1] == moe.num_experts and top_k in (None, moe.top_k)


def _is(ctx: Ctx, rec, role: str) -> bool:
    return isinstance(rec, ModuleRec) and ctx.roles.role(rec) == role


def _top_k_then_softmax(ctx: Ctx, router: ModuleRec) -> bool:
    """The router takes the top-k logits first, then a softmax over those k."""
    names = [
        t.name.rsplit(".", 1)[-1]
        for t in ctx.trace(router).terms
        if t.op in ("fn", "method") and isinstance(t.name, str)
    ]
    picks = [i for i, n in enumerate(names) if n == "topk"]
    softmaxes = [i for i, n in enumerate(names) if n == "softmax"]
    return len(picks) == 1 and len(softmaxes) == 1 and picks[0] < softmaxes[0]
