"""Input-dependent short convolutions on the second attention forward's keys and values
(`attention.layer_kv_convs`).

Inkling-2's full-attention layers filter their key and value projections as its sliding
layers do (`attention.kv_convs`: a causal depthwise filter added back to its input, the sum
divided), but with taps that depend on the token: fixed per-channel taps plus taps a linear
projects from another input of the module, one set per group of channels (a key/value head).
This module reads, without running anything, for each attribute where the second forward's
attention holds a module of another class than the first's realised residual convolution:

* its parts: one 2-D parameter (the fixed taps) and one linear without a bias (the per-token
  taps), nothing else; the kernel is the int attribute equal to one of the parameter's dims
  that divides the linear's outputs, the other dim is the channels, and the linear's outputs
  over the kernel are the groups (the layout: "kernel_channels" where the kernel is dim 0);
* from its traced forward: two tensor inputs, the linear reading the second (never the
  first), a window over the sequence (`unfold`), the first input added back and the sum
  divided by an expression over the kernel (`residual_convs._divisor`);
* in the attention's forward: the module called on the output of a projection and, second,
  on that projection's own input; the config field of its kernel as `attention.kv_convs`
  reads it (at the call building it);
* its groups are the attention's key/value heads: the projection's features are spelt
  `<kv heads> * <head size>` in `__init__` (the head size the factor the query projection's
  features share), an argument of the call building the module restates over the config as
  that kv-heads factor does, and both count the groups on the analysed layer (a package
  builds one set of taps per key/value head: groups counted otherwise would be another model).

The fact is `{"convs": ((<attribute>, <projection attribute>), ...), "static": <parameter
attribute>, "proj": <linear attribute>, "layout", "kernel", "kernel_field", "groups",
"divisor", "fp32"}`; None where a module differs otherwise (the forwards then differ, named by
`attention_forms`)."""

from __future__ import annotations

import libcst as cst

from codegen.analyze.attention_shapes import _factors, _init_assignments, _linear_size
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.layer_rule import restate_init
from codegen.analyze.residual_convs import _computes_in_fp32, _divisor, _kernel_field

FEATURE = "attention.layer_kv_convs"


def read(ctx: Ctx, first, other, kv_convs: dict | None, layers=()) -> dict | None:
    """The fact (see the module's doc) for the attention `other` (AttnInfo, on `layers`)
    against `first`, whose residual convolutions are `kv_convs` (the analysed
    `attention.kv_convs`)."""
    if not kv_convs:
        return None
    realised = dict(kv_convs["convs"])
    swapped = [
        (name, child)
        for name, child in other.rec.attrs.items()
        if name in realised
        and isinstance(child, ModuleRec)
        and isinstance(first.rec.attrs.get(name), ModuleRec)
        and child.kind != first.rec.attrs[name].kind
    ]
    if not swapped:
        return None
    calls = ctx.trace(other.rec, inline=False).terms
    shapes, convs, site = set(), [], None
    for name, child in swapped:
        shape = _shape(ctx, child)
        call = [t for t in calls if t.op == "call" and t.module is child]
        if shape is None or len(call) != 1 or not _reads_projection_input(call[0], realised[name]):
            return None
        if not _groups_are_kv_heads(ctx, other, name, realised[name], shape["groups"], layers):
            return None
        field = _kernel_field(ctx, other.rec, child, shape["kernel"], name)
        if field is None:
            return None
        shapes.add(tuple(sorted({**shape, "kernel_field": field}.items())))
        convs.append((name, realised[name]))
        site = site or ctx.site(child)
    if len(shapes) != 1:
        return None
    if site is not None:
        ctx.cite(FEATURE, f"{site} (taps of the full layers' key/value filters per token)")
    return {"convs": tuple(convs), **dict(shapes.pop())}


def _shape(ctx: Ctx, rec: ModuleRec) -> dict | None:
    """The parts, kernel, groups, layout, divisor and fp32 of an input-dependent residual
    short convolution, else None."""
    params = [
        (n, v) for n, v in rec.attrs.items() if isinstance(v, ParamRec) and v.kind == "parameter"
    ]
    linears = [(n, c) for n, c in rec.attrs.items() if isinstance(c, ModuleRec)]
    if len(params) != 1 or len(linears) != 1 or linears[0][1].kind != "Linear":
        return None
    (static, param), (proj, linear) = params[0], linears[0]
    dims = tuple(getattr(param, "shape", None) or ())
    outputs = _int_arg(linear, "out_features", 1)
    if len(dims) != 2 or outputs is None or linear.kwargs.get("bias", True) is not False:
        return None
    kernels = [
        v
        for v in rec.attrs.values()
        if isinstance(v, int) and not isinstance(v, bool) and v in dims and outputs % v == 0
    ]
    if len(set(kernels)) != 1:
        return None
    kernel = kernels[0]
    layout = "kernel_channels" if dims[0] == kernel else "channels_kernel"
    channels = dims[1] if layout == "kernel_channels" else dims[0]
    groups = outputs // kernel
    if channels % groups:
        return None
    terms = ctx.trace(rec).terms
    inputs = [t for t in terms if t.op == "input"]
    primary = next((t for t in inputs if t.kwargs.get("primary")), None)
    source = next((t for t in inputs if t is not primary), None)
    taps = [t for t in terms if t.op == "call" and t.module is linear]
    if primary is None or source is None or len(taps) != 1 or taps[0].args[0] is not source:
        return None
    if not any(t.op == "fn" and t.name.rsplit(".", 1)[-1] == "unfold" for t in terms):
        return None
    residual = [t for t in terms if t.op == "add" and any(a is primary for a in t.args)]
    divided = [t for t in terms if t.op == "div" and t.args and t.args[0] in residual]
    divisor = _divisor(ctx, rec, kernel, divided[0]) if len(divided) == 1 else None
    if divisor is None:
        return None
    return {
        "static": static,
        "proj": proj,
        "layout": layout,
        "kernel": kernel,
        "groups": groups,
        "divisor": divisor,
        "fp32": _computes_in_fp32(ctx, rec),
    }


def _groups_are_kv_heads(ctx: Ctx, attn, name: str, projection: str, groups: int, layers) -> bool:
    """Whether the filter `name`'s groups are the key/value heads of the attention `attn`
    (AttnInfo): the projection's features `a * b` in `__init__`, the head size the factor
    the query projection's features share (restated alike), the other the kv heads; an
    argument of the call building the filter restated as that kv-heads factor, whose value
    on the analysed layer is `groups`."""
    rec = attn.rec
    names = {id(child): key for key, child in rec.attrs.items()}
    query = names.get(id(attn.q_lins[0].module)) if attn.q_lins else None
    assigned = _init_assignments(ctx, rec)
    build = assigned.get(name)
    k = _factors(_linear_size(assigned.get(projection), 1, "out_features"))
    q = _factors(_linear_size(assigned.get(query), 1, "out_features"))
    if not isinstance(build, cst.Call) or k is None or q is None or not layers:
        return False
    built = [(layers[0], rec)]
    restated = [restate_init(ctx, rec, side, built) for side in (*k, *q)]
    if None in restated:
        return False
    texts = [text for text, _ in restated]
    shared = [n for n in (0, 1) if texts[n] in texts[2:]]
    if len(shared) != 1:
        return False  # no head size the queries share, or both factors spelt as theirs
    kv_text, kv_values = restated[1 - shared[0]]
    if kv_values[0] != groups:
        return False
    arguments = [restate_init(ctx, rec, arg.value, built) for arg in build.args]
    return any(found is not None and found[0] == kv_text for found in arguments)


def _int_arg(rec: ModuleRec, name: str, position: int) -> int | None:
    value = rec.kwargs.get(name, rec.args[position] if len(rec.args) > position else None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reads_projection_input(call: Term, projection: str) -> bool:
    """`self.<conv>(self.<projection>(x), x, ...)`: the first argument the projection's
    output, the second the projection's own input."""
    if len(call.args) < 2 or not isinstance(call.args[0], Term):
        return False
    made = call.args[0]
    node = made.site.node if made.site is not None else None
    attr = getattr(getattr(node, "func", None), "attr", None)
    return (
        made.op == "call"
        and getattr(attr, "value", None) == projection
        and bool(made.args)
        and made.args[0] is call.args[1]
    )
