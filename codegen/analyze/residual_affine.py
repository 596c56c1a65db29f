"""Residual adds that are learned affine maps of both operands (ZAYA's residual scaling).

Each sublayer's residual sum is `(out + b) * s + (x + c) * t`: the sublayer's output and the
stream each shifted and scaled by per-channel parameters (vectors of the hidden size) before
they are summed. Recognised when both residual adds of a layer have that shape and the four
parameters of each add belong to one child module of the layer (called with the output and
the stream); they are named by their attributes (so the package maps their checkpoint keys),
by where they sit in the sum, never by their names. Two modules built alike share one record,
so the attention's add is the first of them the layer's forward calls, the FFN's the second.
"""

from __future__ import annotations

import libcst.matchers as m

from codegen.analyze.dataflow import Term, parents, walk
from codegen.analyze.evaluate import ModuleRec, ParamRec

LABELS = ("attention", "mlp")
PARTS = ("out_bias", "out_scale", "stream_bias", "stream_scale")


def read(ctx, layer: ModuleRec, facts: dict, out: Term) -> dict | None:
    """{"attention": {"module": attribute, "out_bias", "out_scale", "stream_bias",
    "stream_scale": its parameters' attributes}, "mlp": {...}} of `layer`, from its
    placement `facts` and its forward's output `out`; None for any other form."""
    up = parents(out)
    called = _called(ctx, layer)
    found = {}
    for i, label in enumerate(LABELS):
        fact = facts.get(label)
        if not isinstance(fact, dict) or not isinstance(fact.get("add"), Term):
            return None
        call = fact["call"]
        shifted = fact["add"]  # the climb stops at the first add: the output's shift
        ps = up.get(id(shifted), [])
        if len(ps) != 1 or ps[0].op != "mul":
            return None
        scaled = ps[0]
        ps = up.get(id(scaled), [])
        if len(ps) != 1 or ps[0].op != "add" or len(ps[0].args) != 2:
            return None
        total = ps[0]
        (stream,) = [a for a in total.args if a is not scaled] or [None]
        out_part = _affine(shifted, scaled, call)
        stream_part = _affine(*_halves(stream), None)
        if out_part is None or stream_part is None:
            return None
        params = (*out_part, *stream_part)
        owners = _owners(layer, params, called)
        if len(owners) not in (1, len(LABELS)):
            return None
        name, module = owners[i % len(owners)]
        attrs = {id(v): k for k, v in module.attrs.items()}
        found[label] = {
            "module": name,
            **{p: attrs[id(x)] for p, x in zip(PARTS, params, strict=True)},
        }
    if len({f["module"] for f in found.values()}) != len(LABELS):
        return None
    return found


def _halves(term) -> tuple:
    """(the add, the product) of `(x + c) * t`, else (None, None)."""
    if not (isinstance(term, Term) and term.op == "mul" and len(term.args) == 2):
        return None, None
    adds = [a for a in term.args if isinstance(a, Term) and a.op == "add"]
    return (adds[0], term) if len(adds) == 1 else (None, None)


def _affine(add, mul, operand) -> tuple[ParamRec, ParamRec] | None:
    """(bias, scale) of `(v + bias) * scale`; `operand` (when given) is reached through v."""
    if add is None or mul is None or len(add.args) != 2:
        return None
    bias = [_vector(a) for a in add.args if _vector(a) is not None]
    scale = [_vector(a) for a in mul.args if a is not add and _vector(a) is not None]
    if len(bias) != 1 or len(scale) != 1 or not any(a is add for a in mul.args):
        return None
    if operand is not None and not any(x is operand for x in walk(add)):
        return None
    return bias[0], scale[0]


def _vector(term) -> ParamRec | None:
    """The parameter a term reads, when it is one value per channel."""
    if isinstance(term, Term) and term.op == "param" and isinstance(term.module, ParamRec):
        rec = term.module
        if rec.kind == "parameter" and len(rec.shape) == 1:
            return rec
    return None


def _owners(layer: ModuleRec, params, called: list[str]) -> list[tuple[str, ModuleRec]]:
    """(attribute, record) of the layer's child modules holding all of `params` that its
    forward calls, in the order of the calls."""
    ids = {id(p) for p in params}
    if len(ids) != len(params):
        return []
    children = dict(layer.children())
    return [
        (name, children[name])
        for name in called
        if isinstance(children.get(name), ModuleRec)
        and ids <= {id(v) for v in children[name].attrs.values() if isinstance(v, ParamRec)}
    ]


def _called(ctx, layer: ModuleRec) -> list[str]:
    """The attributes the layer's forward calls (`self.<name>(...)`), first calls in order."""
    found = ctx.model.project.find_method(layer.cls, "forward") if layer.cls else None
    if found is None:
        return []
    pattern = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()))
    return list(dict.fromkeys(call.func.attr.value for call in m.findall(found[1], pattern)))
