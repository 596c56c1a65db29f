"""A routed MoE a bool config switch adds beside the dense MLP (Gemma 4's MoE layers).

The analysed config may leave the switch off, so the MoE is read from the code with it on:
the model is instantiated statically a second time with the field True (and the sizes the
switched branch reads given distinct small values, so each shape names its field), and the
layer's data flow and its router's are read from there. Read by structure, not by names:

* in the layer's forward, a module holding 3-D parameters (the experts) is called with a
  normed copy of the stream `s` (the residual sum after the attention) and the weights and
  indices of a router called on `s` itself; the dense MLP reads `s` through its own pre-norm;
  the MLP's output and the experts' are each normed and summed, and the sum goes through the
  FFN's post-norm before it is added to `s`;
* the router norms its input with a weightless norm, multiplies it by a learned per-channel
  vector and by hidden_size ** -0.5, projects it to one logit per expert, takes the softmax
  in fp32, picks the top k, divides them by their sum and multiplies each by its expert's
  entry of a learned per-expert vector;
* the experts hold gate and up fused in one [experts, 2 * inner, hidden] tensor split in
  halves (`.chunk(2, ...)`), down as [experts, hidden, inner], and apply the dense MLP's
  activation to the gate.

Anything else gives None (the switch stays refused by the package).
"""

from __future__ import annotations

import dataclasses
import math

import libcst as cst
import libcst.matchers as m

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.evaluate import ActRec, ModuleRec, ParamRec
from codegen.analyze.roles import LINEAR, MLP, NORM

# distinct sizes for the fields the switched branch reads, so a shape names its field
_SIZES = (7, 11, 13, 17, 19, 23)
_PASS = {"index", "attr"}  # reshapes and views are passed through by the tracer already


def detect(ctx: Ctx, switches) -> dict | None:
    """The switched MoE's parts (see features.Block.parallel_moe), or None."""
    model = ctx.model
    if not model.layers or not model.stack_path or not isinstance(model.layers[0], ModuleRec):
        return None
    for switch in switches:
        if switch.kind != "bool" or switch.container:
            continue
        if not any(v.label == "True" and "creates" in v.selects for v in switch.values):
            continue
        found = _read(ctx, switch.field, switch.configured)
        if found is not None:
            return found
    return None


def _load(ctx: Ctx, values: dict):
    from codegen.analyze.model import get_path, load_model

    target = ctx.model.target
    try:
        switched = load_model(dataclasses.replace(target, config_values=values))
    except Exception:  # noqa: BLE001 - a setting the static instantiation cannot build
        return None, None
    stack = get_path(switched.entry, ctx.model.stack_path)
    items = getattr(stack, "items", None)
    if not items or not isinstance(items[0], ModuleRec):
        return None, None
    return switched, items[0]


def _read(ctx: Ctx, field: str, configured) -> dict | None:
    base_values = dict(ctx.model.target.config_values or {})
    off = ctx.model.layers[0]
    if configured:  # the analysed config has it on: what it adds, against it off
        _, off = _load(ctx, {**base_values, field: False})
        if off is None:
            return None
    switched, layer = _load(ctx, {**base_values, field: True})
    if layer is None:
        return None
    added = set(layer.attrs) - set(off.attrs)
    if not any(_stacked(layer.attrs[name]) for name in added):
        return None
    first = Ctx(switched)  # its forwards read the fields the branch needs at run time too
    first.trace(layer)
    for name in added:
        if isinstance(layer.attrs[name], ModuleRec) and layer.attrs[name].cls is not None:
            first.trace(layer.attrs[name])
    # the fields only the switched branch reads, each given a size of its own
    before = set(
        _off_reads(ctx, base_values, field) if configured else ctx.model.config.read_log or ()
    )
    fresh = sorted(
        {k.split(".")[-1] for k in switched.config.read_log or ()}
        - {k.split(".")[-1] for k in before}
        - {field}
    )
    if len(fresh) > len(_SIZES):
        return None
    sizes = dict(zip(fresh, _SIZES, strict=False))
    switched, layer = _load(ctx, {**base_values, field: True, **sizes})
    if layer is None:
        return None
    sctx = Ctx(switched)
    found = _layer_flow(sctx, layer, added)
    if found is None:
        return None
    router = _router_form(sctx, layer.attrs[found["router"]], switched)
    experts = _experts_form(sctx, layer.attrs[found["experts"]], layer)
    if router is None or experts is None:
        return None
    by_size = {v: k for k, v in sizes.items()}
    fields = {
        "num_experts": by_size.get(router.pop("experts_count")),
        "top_k": by_size.get(router.pop("k")),
        "moe_hidden": by_size.get(experts.pop("inner")),
    }
    if None in fields.values():
        return None
    site = found.pop("site")
    ctx.cite(
        "block.parallel_moe",
        f"{site} (config switch {field}: dense MLP and routed experts side by side, each"
        f" normed, summed; router at {router.pop('site')})",
    )
    return {"field": field, **found, **router, **experts, "fields": fields}


def _off_reads(ctx: Ctx, values: dict, field: str) -> list:
    """The config fields read with the switch off (its layer and backbone traced)."""
    model, layer = _load(ctx, {**values, field: False})
    if model is None:
        return []
    other = Ctx(model)
    other.trace(layer)
    return list(model.config.read_log or ())


def _stacked(rec) -> bool:
    return isinstance(rec, ModuleRec) and any(
        isinstance(p, ParamRec) and len(p.shape) == 3 for p in rec.attrs.values()
    )


def _self_attr(term: Term) -> str | None:
    """`x` of the `self.x(...)` call a term was made at."""
    node = term.site.node if term.site is not None else None
    if isinstance(node, cst.Call) and m.matches(
        node.func, m.Attribute(value=m.Name("self"), attr=m.Name())
    ):
        return node.func.attr.value
    return None


def _is_call(term, ctx: Ctx, role: str) -> bool:
    return isinstance(term, Term) and term.op == "call" and ctx.roles.role(term.module) == role


def _users(terms, term) -> list[Term]:
    return [t for t in terms if any(a is term for a in (*t.args, *t.kwargs.values()))]


def _layer_flow(ctx: Ctx, layer: ModuleRec, added: set) -> dict | None:
    terms = ctx.trace(layer).terms
    calls = [t for t in terms if t.op == "call"]
    experts = [t for t in calls if _self_attr(t) in added and _stacked(t.module)]
    if len(experts) != 1 or len(experts[0].args) != 3:
        return None
    expert_call = experts[0]
    normed, picks, weights = expert_call.args
    routers = {id(a.args[0]) for a in (picks, weights) if isinstance(a, Term) and a.args}
    router_calls = [t for t in calls if id(t) in routers]
    if len(router_calls) != 1 or _self_attr(router_calls[0]) not in added:
        return None
    router_call = router_calls[0]
    stream = router_call.args[0] if router_call.args else None
    if not (isinstance(stream, Term) and stream.op == "add"):
        return None  # the router reads the residual sum itself
    if not _is_call(normed, ctx, NORM) or normed.args[0] is not stream:
        return None
    moe_norm = _self_attr(normed)
    mlps = [t for t in calls if _is_call(t, ctx, MLP)]
    if len(mlps) != 1 or not _is_call(mlps[0].args[0], ctx, NORM):
        return None
    if mlps[0].args[0].args[0] is not stream:
        return None
    dense_out = _single_norm_user(ctx, terms, mlps[0])
    moe_out = _single_norm_user(ctx, terms, expert_call)
    if dense_out is None or moe_out is None:
        return None
    joined = _users(terms, dense_out)
    if len(joined) != 1 or joined[0].op != "add" or not any(a is moe_out for a in joined[0].args):
        return None
    post = _single_norm_user(ctx, terms, joined[0])
    if post is None:
        return None
    residual = _users(terms, post)
    if len(residual) != 1 or residual[0].op != "add" or stream not in residual[0].args:
        return None
    names = {
        "router": _self_attr(router_call),
        "experts": _self_attr(expert_call),
        "moe_norm": moe_norm,
        "post_dense_norm": _self_attr(dense_out),
        "post_moe_norm": _self_attr(moe_out),
        "post_ffn_norm": _self_attr(post),  # the FFN's post-norm, on the branches' sum
    }
    if None in names.values() or not {v for k, v in names.items() if k != "post_ffn_norm"} <= added:
        return None
    return {**names, "site": joined[0].site.cite() if joined[0].site else "?"}


def _single_norm_user(ctx: Ctx, terms, term: Term) -> Term | None:
    users = _users(terms, term)
    return users[0] if len(users) == 1 and _is_call(users[0], ctx, NORM) else None


def _fn(term, name: str) -> bool:
    return isinstance(term, Term) and term.op == "fn" and term.name.rsplit(".", 1)[-1] == name


def _router_form(ctx: Ctx, router: ModuleRec, model) -> dict | None:
    """norm -> * vector -> * hidden**-0.5 -> proj -> softmax(fp32) -> topk -> / sum ->
    * per-expert vector[indices]; the parts' names, k and the experts' count."""
    if router.cls is None:
        return None
    terms = ctx.trace(router).terms
    params = {id(p): n for n, p in router.attrs.items() if isinstance(p, ParamRec)}
    out = terms[-1] if terms else None
    if not (isinstance(out, Term) and out.op == "mul" and len(out.args) == 2):
        return None
    renormed, picked = out.args
    if not (isinstance(picked, Term) and picked.op == "index" and picked.args):
        return None
    expert_scale = picked.args[0]
    if not (isinstance(expert_scale, Term) and expert_scale.op == "param"):
        return None
    if not (isinstance(renormed, Term) and renormed.op == "div"):
        return None
    top, total = renormed.args
    if not (_fn(total, "sum") and total.args[0] is top and top.op == "index"):
        return None
    topk = top.args[0]
    if not _fn(topk, "topk"):
        return None
    probs = topk.args[0]
    if not (_fn(probs, "softmax") and "float32" in repr(probs.kwargs.get("dtype"))):
        return None
    proj = probs.args[0]
    if not _is_call(proj, ctx, LINEAR):
        return None
    scaled = proj.args[0]
    if not (isinstance(scaled, Term) and scaled.op == "mul"):
        return None
    root = next((a for a in scaled.args if isinstance(a, float)), None)
    vec = next((a for a in scaled.args if isinstance(a, Term)), None)
    hidden = attr(model.config, "hidden_size")
    if root is None or not isinstance(hidden, int) or not math.isclose(root, hidden**-0.5):
        return None
    if not (vec is not None and vec.op == "mul"):
        return None
    normed = next((a for a in vec.args if _is_call(a, ctx, NORM)), None)
    scale = next((a for a in vec.args if isinstance(a, Term) and a.op == "param"), None)
    if normed is None or scale is None or normed.args[0] is not terms[0]:
        return None
    if any(isinstance(p, ParamRec) for p in normed.module.attrs.values()):
        return None  # the router's norm learns no weight
    if scale.module.shape != (hidden,):
        return None
    k = topk.kwargs.get("k", topk.args[1] if len(topk.args) > 1 else None)
    count = expert_scale.module.shape[0] if expert_scale.module.shape else None
    proj_out = proj.module.args[1] if len(proj.module.args) > 1 else None
    if not isinstance(k, int) or count is None or proj_out != count:
        return None
    names = {
        "router_norm": _self_attr(normed),
        "router_proj": _self_attr(proj),
        "router_scale": params.get(id(scale.module)),
        "expert_scale": params.get(id(expert_scale.module)),
    }
    if None in names.values():
        return None
    site = ctx.class_site(router) or "?"
    return {**names, "k": k, "experts_count": count, "site": site}


def _experts_form(ctx: Ctx, experts: ModuleRec, layer: ModuleRec) -> dict | None:
    """Fused [E, 2 * inner, hidden] gate_up split in halves, [E, hidden, inner] down, the
    dense MLP's activation on the gate."""
    stacked = {n: p for n, p in experts.attrs.items() if isinstance(p, ParamRec)}
    stacked = {n: p for n, p in stacked.items() if len(p.shape) == 3}
    if len(stacked) != 2:
        return None
    pairs = [(a, b) for a in stacked for b in stacked if a != b]
    fits = [
        (a, b)
        for a, b in pairs
        if stacked[a].shape == (stacked[b].shape[0], 2 * stacked[b].shape[2], stacked[b].shape[1])
    ]
    if len(fits) != 1:
        return None
    up_name, down_name = fits[0]
    inner = stacked[down_name].shape[2]
    source = ctx.model.project.find_method(experts.cls, "forward") if experts.cls else None
    if source is None:
        return None
    halves = m.Call(
        func=m.Attribute(attr=m.Name("chunk")), args=[m.Arg(m.Integer("2")), m.ZeroOrMore()]
    )
    if not m.findall(source[1], halves):
        return None
    acts = [v for v in experts.attrs.values() if isinstance(v, ActRec)]
    dense = [
        v
        for child in layer.attrs.values()
        if isinstance(child, ModuleRec) and ctx.roles.role(child) == MLP
        for v in child.attrs.values()
        if isinstance(v, ActRec)
    ]
    if len(acts) != 1 or not dense or acts[0].name != dense[0].name:
        return None
    if not isinstance(inner, int):
        return None
    return {"gate_up": up_name, "down": down_name, "inner": inner, "activation": acts[0].name}
