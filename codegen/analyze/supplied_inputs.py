"""Optional inputs of an attention that the decoder stack does supply.

An attention's forward is traced alone, its `x=None` parameters at their default: the
analysis follows the default call. Where the stack computes a tensor once, hands it to every
layer and the layer hands it on to its attention under the same optional parameter (a
sin/cos table the attention applies to q and k only `if table is not None`), the default
call is not the call the model makes. `supplied` names those parameters, with the term the
stack computed for each, so the attention can be traced again with them present.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx, Trace
from codegen.analyze.dataflow import Term, Tracer
from codegen.analyze.evaluate import ModuleListRec, ModuleRec

_CACHE = "_supplied_inputs"


def supplied(ctx: Ctx, attention: ModuleRec) -> dict[str, Term]:
    """{parameter of `attention.forward` defaulting to None: the term the stack computes for
    it} for the parameters the stack hands a tensor through the layer; {} when none is."""
    cache = ctx.__dict__.setdefault(_CACHE, {})
    if id(attention) not in cache:
        cache[id(attention)] = _supplied(ctx, attention)
    return cache[id(attention)]


def trace_with(ctx: Ctx, rec: ModuleRec, names) -> Trace:
    """`rec.forward` traced with each of `names` present (a tensor input, not None: an
    `if name is None:` default is not taken)."""
    tracer = Tracer(ctx.model.interp, ctx.roles, inline=True)
    inputs = {name: tracer.new("input", name=name, kwargs={"given": True}) for name in names}
    return Trace(tracer, tracer.trace(rec, inputs=inputs))


def _supplied(ctx: Ctx, attention: ModuleRec) -> dict[str, Term]:
    owner = ctx.model.stack_owner
    layer = next((x for x in ctx.model.layers or () if _holds(x, attention)), None)
    if owner is None or layer is None or layer.cls is None:
        return {}
    call = next((t for t in ctx.trace(owner).terms if t.op == "call" and t.module is layer), None)
    if call is None:
        return {}
    to_layer = {
        name: value
        for name, value in bind(ctx, layer, call).items()
        if name in optional(ctx, layer) and _computed(value)
    }
    if not to_layer:
        return {}
    inner = trace_with(ctx, layer, to_layer)
    call = next((t for t in inner.terms if t.op == "call" and t.module is attention), None)
    if call is None:
        return {}
    out = {}
    for name, value in bind(ctx, attention, call).items():
        if name not in optional(ctx, attention) or not isinstance(value, Term):
            continue
        if value.op == "input" and value.name in to_layer:
            out[name] = to_layer[value.name]
    return out


def _holds(rec, target: ModuleRec, depth: int = 0) -> bool:
    if rec is target:
        return True
    if depth > 4:
        return False
    if isinstance(rec, ModuleListRec):
        return any(_holds(x, target, depth + 1) for x in rec.items)
    if isinstance(rec, ModuleRec):
        return any(_holds(c, target, depth + 1) for _, c in rec.children())
    return False


def _forward(ctx: Ctx, rec: ModuleRec):
    found = ctx.model.project.find_method(rec.cls, "forward") if rec.cls else None
    return found[1] if found else None


def optional(ctx: Ctx, rec: ModuleRec) -> set[str]:
    """The parameters of `rec.forward` whose default is None."""
    import libcst as cst

    fn = _forward(ctx, rec)
    if fn is None:
        return set()
    params = list(fn.params.params) + list(fn.params.kwonly_params)
    return {
        p.name.value
        for p in params
        if isinstance(p.default, cst.Name) and p.default.value == "None"
    }


def bind(ctx: Ctx, rec: ModuleRec, call: Term) -> dict:
    """The call's arguments by the parameter names of `rec.forward`."""
    fn = _forward(ctx, rec)
    if fn is None:
        return {}
    names = [p.name.value for p in fn.params.params][1:]
    bound = dict(zip(names, call.args, strict=False))
    bound.update(call.kwargs)
    return bound


def _computed(value) -> bool:
    """A tensor the caller computed (not an input of its own it may leave at None)."""
    return isinstance(value, Term) and value.op != "input"
