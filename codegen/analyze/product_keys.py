"""Product-key experts a bool config switch puts in place of the MLP (Doge's CDMoE).

With the switch on, the layer's feed-forward is a SwiGLU (the shared expert) plus a sum of
"retrieval" experts, each one row of two embedding tables (E experts, rows of the hidden
size): a router projects each token to 2 x K logits (K = floor(sqrt(E))), the top K of each
half combine into K x K candidate (score sum, index x * K + y) pairs, the top k of those
are the token's experts; expert e's output is act(down[e] . x) * softmax weight times
up[e]. Found by structure, never by a name: the layer instantiated with the switch flipped
holds, in its MLP slot, a module with two embedding tables of E rows, a router projection
to 2 * floor(sqrt(E)) outputs and a gated three-projection MLP; the table whose rows
multiply the token first is the down table.
"""

from __future__ import annotations

import copy
import math

import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ConfigObj, ModuleRec, Unknown
from codegen.analyze.roles import LINEAR
from codegen.analyze.walk import findall

FEATURE = "ffn.product_keys"


def detect(ctx: Ctx, switch_list) -> dict | None:
    """{"field": the bool switch, "router", "down", "up": the module's attributes, "w1",
    "w3", "w2": the shared expert's gate, up and down projections, "experts", "top_k": the
    config fields of E and k, "renormalise": the config flag under which the top-k weights
    are divided by their sum (None: never)} or None."""
    if not ctx.model.layers:
        return None
    for switch in switch_list:
        flipped = not bool(switch.configured)
        if switch.kind != "bool" or switch.container or not _builds(switch, flipped):
            continue
        layer = _layer_with(ctx, switch.field, flipped)
        if layer is None:
            continue
        for _name, rec in layer.children():
            found = read(ctx, rec) if isinstance(rec, ModuleRec) else None
            if found is not None and flipped is True:
                ctx.cite(FEATURE, f"{ctx.class_site(rec)}; config:{switch.field}")
                return {"field": switch.field, **found}
    return None


def _builds(switch, value: bool) -> bool:
    """The switch's `value` selects a module of its own (the analysis read a constructor)."""
    return any(v.label == str(value) and "(...)" in v.selects for v in switch.values)


def _layer_with(ctx: Ctx, field: str, value: bool) -> ModuleRec | None:
    """Decoder layer 0 instantiated under a copy of its config whose `field` is `value`."""
    layer = ctx.model.layers[0]
    config = next((a for a in layer.args if isinstance(a, ConfigObj)), None)
    if config is None or config.key(field) not in config.attrs:
        return None
    clone = copy.copy(config)
    clone.attrs = dict(config.attrs)
    clone.attrs[config.key(field)] = value
    clone.read_log = None
    args = [clone if a is config else a for a in layer.args]
    try:
        return ctx.model.interp.instantiate(layer.cls, args, dict(layer.kwargs), layer.site)
    except Unknown:
        return None


def read(ctx: Ctx, rec: ModuleRec) -> dict | None:
    if rec.cls is None:
        return None
    tables, linears = {}, {}
    for name, child in rec.children():
        if not isinstance(child, ModuleRec):
            continue
        if child.kind == "Embedding" and len(child.args) >= 2:
            tables[name] = tuple(child.args[:2])
        elif ctx.roles.role(child) == LINEAR and len(child.args) >= 2:
            linears[name] = tuple(child.args[:2])
    if len(tables) != 2 or len(set(tables.values())) != 1 or len(linears) != 4:
        return None
    experts, hidden = next(iter(tables.values()))
    if not isinstance(experts, int) or experts < 1:
        return None
    keys = math.floor(math.sqrt(experts))
    routers = [n for n, (i, o) in linears.items() if i == hidden and o == 2 * keys]
    if len(routers) != 1:
        return None
    mlp = {n: shape for n, shape in linears.items() if n != routers[0]}
    trace = ctx.trace(rec)
    calls = {id(t): t for t in trace.terms if t.op == "call" and isinstance(t.module, ModuleRec)}
    named = {id(child): name for name, child in rec.children()}
    gates = [
        named[id(t.args[0].module)]
        for t in trace.terms
        if t.op == "act"
        and t.args
        and isinstance(t.args[0], Term)
        and id(t.args[0]) in calls
        and id(t.args[0].module) in named
    ]
    gate = [g for g in gates if g in mlp]
    down = [n for n, (i, o) in mlp.items() if o == hidden and i != hidden]
    if len(gate) != 1 or len(down) != 1 or gate[0] == down[0]:
        return None
    up = [n for n in mlp if n not in (gate[0], down[0])]
    first = _first_table(trace, rec, named, set(tables))
    if first is None or len(up) != 1:
        return None
    fields = _fields(ctx, rec, experts)
    if fields is None:
        return None
    fields["renormalise"] = _renormalise(ctx, rec)
    return {
        "router": routers[0],
        "down": first,
        "up": next(n for n in tables if n != first),
        "w1": gate[0],
        "w3": up[0],
        "w2": down[0],
        **fields,
    }


def _first_table(trace, rec: ModuleRec, named: dict, tables: set) -> str | None:
    """The table whose rows a product takes with the module's input (the down table)."""
    for t in trace.terms:
        if not (t.op == "matmul" or (t.op == "fn" and t.name.rsplit(".", 1)[-1] == "matmul")):
            continue
        args = [a for a in t.args if isinstance(a, Term)]
        holders = [
            named.get(id(a.module))
            for a in args
            if a.op == "call" and isinstance(a.module, ModuleRec)
        ]
        holders = [h for h in holders if h in tables]
        if len(holders) == 1 and any(
            x.op == "input" and x.kwargs.get("primary") for a in args for x in walk(a)
        ):
            return holders[0]
    return None


def _fields(ctx: Ctx, rec: ModuleRec, experts: int) -> dict | None:
    """{"experts", "top_k"}: the config fields of the expert count and of the top-k, read
    from `self.<attr> = config.<field>` in `__init__` (the attribute the top-k's count is)."""
    found = ctx.model.project.find_method(rec.cls, "__init__")
    if found is None:
        return None
    reads = {}
    for a in findall(found[1], m.Assign(targets=[m.AssignTarget(target=_SELF_ATTR)])):
        if m.matches(a.value, _CONFIG_READ):
            reads[a.targets[0].target.attr.value] = a.value.attr.value
    counts = [
        t.args[1]
        for t in ctx.trace(rec).terms
        if t.op == "fn" and t.name.rsplit(".", 1)[-1] == "topk" and len(t.args) > 1
    ]
    held = {n: v for n, v in rec.attrs.items() if n in reads and isinstance(v, int)}
    experts_field = [reads[n] for n, v in held.items() if v == experts]
    top_k = [reads[n] for n, v in held.items() if counts and v == counts[-1]]
    if len(experts_field) != 1 or len(top_k) != 1:
        return None
    return {"experts": experts_field[0], "top_k": top_k[0]}


def _renormalise(ctx: Ctx, rec: ModuleRec) -> str | None:
    """The config field of a flag under which the forward divides a tensor by its own sum
    (`if self.<flag>: w /= w.sum(...)`: the top-k weights renormalised), else None."""
    init = ctx.model.project.find_method(rec.cls, "__init__")
    forward = ctx.model.project.find_method(rec.cls, "forward")
    if init is None or forward is None:
        return None
    reads = {
        a.targets[0].target.attr.value: a.value.attr.value
        for a in findall(init[1], m.Assign(targets=[m.AssignTarget(target=_SELF_ATTR)]))
        if m.matches(a.value, _CONFIG_READ)
    }
    found = []
    for branch in findall(forward[1], m.If(test=_SELF_ATTR)):
        if branch.test.attr.value in reads and findall(branch.body, _DIVIDED_BY_SUM):
            found.append(reads[branch.test.attr.value])
    return found[0] if len(found) == 1 else None


# `w /= w.sum(...)` or `w = w / w.sum(...)`
_SUM = m.Call(func=m.Attribute(attr=m.Name("sum")))
_DIVIDED_BY_SUM = m.AugAssign(operator=m.DivideAssign(), value=_SUM) | m.Assign(
    value=m.BinaryOperation(operator=m.Divide(), right=_SUM)
)

_SELF_ATTR = m.Attribute(value=m.Name("self"))
_CONFIG_READ = m.Attribute(value=m.Name("config") | m.Attribute(attr=m.Name("config")))
