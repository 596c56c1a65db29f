"""A low-rank residual branch beside the attention (`block.low_rank_branch`: gemma3n's Laurel
block, a learned augmented residual).

Read from the code's structure, without running anything:

* a sub-module of the decoder layer whose traced forward is `x + norm(up(down(x)))`: two
  bias-free Linears (`down` hidden -> rank, `up` rank -> hidden) and a norm of the same class
  and arguments as the layer's norm before the attention, nothing else among its children;
* in the layer's traced forward, its one call reads the attention's (normed) input, and its
  output is summed with the attention's residual sum (the stream plus the attention's
  output), that sum divided by a constant (gemma3n: `/ math.sqrt(2)`) or left whole, before
  the FFN reads it;
* the config field its rank reads, at the call that builds `down` (`laurel_rank`).

The division is the branch's own: it is read here, so `block.residual_scale` does not take it
for a scale of the sublayers' outputs (`detect_norm.placement` asks `is_branch_sum`). A branch
of another shape (on the un-normed stream, its sum scaled otherwise) is left to
`layer_extras`, which names the module unsupported."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, first_output, parents, primary_input, strip, walk
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.roles import ATTENTION, MIXER, NORM


def detect(ctx: Ctx) -> dict | None:
    """{"module", "down", "up", "norm" (attributes), "rank", "rank_field", "divisor" (the
    constant the sum is divided by, or None)}, cited at the branch's call; else None."""
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    if not layers or layers[0].cls is None:
        return None
    found = _read(ctx, layers[0])
    if found is None:
        return None
    ctx.cite("block.low_rank_branch", found["site"])
    return {k: v for k, v in found.items() if k not in ("site", "records")}


def is_branch_sum(ctx: Ctx, layer: ModuleRec, term) -> bool:
    """`term` (in the layer's inlined trace) is the branch's scaled sum: a division by the
    read constant of a sum that runs the branch's `down` projection."""
    found = _read(ctx, layer)
    term = strip(term)
    if found is None or not isinstance(term, Term) or term.op != "div":
        return False
    inner = [a for a in term.args if isinstance(a, Term)]
    constants = [a for a in term.args if not isinstance(a, Term)]
    if len(inner) != 1 or constants != [found["divisor"]] or inner[0].op != "add":
        return False
    down = found["records"][0]
    return any(t.op == "call" and t.module is down for t in walk(inner[0]))


def _read(ctx: Ctx, layer: ModuleRec) -> dict | None:
    return ctx.memo(("low_rank_branch", id(layer)), lambda: _find(ctx, layer))


def _find(ctx: Ctx, layer: ModuleRec) -> dict | None:
    trace = ctx.trace(layer, inline=False)
    out = first_output(trace.result)
    if not isinstance(out, Term):
        return None
    up = parents(out)
    calls = [t for t in walk(out) if t.op == "call" and isinstance(t.module, ModuleRec)]
    attention = [t for t in calls if ctx.roles.role(t.module) in (ATTENTION, MIXER)]
    if len(attention) != 1:
        return None
    normed = strip(primary_input(attention[0]))
    if not _norm_call(ctx, normed):
        return None
    found = None
    for name, child in layer.children():
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        parts = _shape(ctx, child)
        branch_calls = [t for t in calls if t.module is child]
        if parts is None or len(branch_calls) != 1:
            continue
        call = branch_calls[0]
        if strip(primary_input(call)) is not normed or found is not None:
            return None
        if not _same_norm(parts["records"][2], normed.module):
            return None
        divisor = _joined(up, call, attention[0])
        if divisor is False:
            return None
        field = _rank_field(ctx, parts["records"][0], parts["rank"])
        if field is None:
            return None
        down, right, norm = parts["names"]
        found = {
            "module": name,
            "down": down,
            "up": right,
            "norm": norm,
            "rank": parts["rank"],
            "rank_field": field,
            "divisor": divisor,
            "records": parts["records"],
            "site": call.site.cite() if call.site is not None else ctx.site(child),
        }
    return found


def _norm_call(ctx: Ctx, term) -> bool:
    return (
        isinstance(term, Term)
        and term.op == "call"
        and isinstance(term.module, ModuleRec)
        and ctx.roles.role(term.module) == NORM
    )


def _same_norm(a: ModuleRec, b: ModuleRec) -> bool:
    """Built by the same class with the same arguments (the house builds both alike)."""
    return a.cls is b.cls and repr(a.args) == repr(b.args) and repr(a.kwargs) == repr(b.kwargs)


def _shape(ctx: Ctx, rec: ModuleRec) -> dict | None:
    """The branch's parts when `rec`'s forward is `x + norm(up(down(x)))` with bias-free
    Linears hidden -> rank -> hidden and a norm, its only children; else None."""
    children = rec.children()
    if len(children) != 3:
        return None
    trace = ctx.trace(rec)
    out = strip(first_output(trace.result))
    primary = [t for t in trace.terms if t.op == "input" and t.kwargs.get("primary")]
    if len(primary) != 1 or not isinstance(out, Term) or out.op != "add" or len(out.args) != 2:
        return None
    (x,) = primary
    others = [a for a in out.args if a is not x]
    if len(others) != 1:
        return None
    chain = []
    node = strip(others[0])
    while isinstance(node, Term) and node.op == "call" and node is not x:
        chain.insert(0, node)
        node = strip(primary_input(node))
    if node is not x or len(chain) != 3:
        return None
    down, right, norm = (t.module for t in chain)
    if ctx.roles.role(norm) != NORM or not all(_bare_linear(r) for r in (down, right)):
        return None
    dims = [_dims(r) for r in (down, right)]
    if None in dims or dims[0][1] != dims[1][0] or dims[0][0] != dims[1][1]:
        return None
    names = {id(c): n for n, c in children}
    if {id(down), id(right), id(norm)} != set(names):
        return None
    return {
        "names": (names[id(down)], names[id(right)], names[id(norm)]),
        "records": (down, right, norm),
        "rank": dims[0][1],
    }


def _bare_linear(rec) -> bool:
    return isinstance(rec, ModuleRec) and rec.kind == "Linear" and rec.kwargs.get("bias") is False


def _dims(rec: ModuleRec) -> tuple[int, int] | None:
    args = list(rec.args)
    size_in = args[0] if args else rec.kwargs.get("in_features")
    size_out = args[1] if len(args) > 1 else rec.kwargs.get("out_features")
    if isinstance(size_in, int) and isinstance(size_out, int):
        return size_in, size_out
    return None


def _joined(up: dict, call: Term, attention: Term):
    """The constant dividing the sum the branch enters with the attention's residual sum
    (None: the sum is left whole); False when the branch is summed otherwise."""
    adds = [p for p in up.get(id(call), []) if p.op == "add"]
    if len(adds) != 1:
        return False
    add = adds[0]
    while True:  # the outermost add of a chain
        outer = [p for p in up.get(id(add), []) if p.op == "add"]
        if not outer:
            break
        add = outer[0]
    if not any(t is attention for t in walk(add)):
        return False
    scaled = [p for p in up.get(id(add), []) if p.op in ("mul", "div")]
    if not scaled:
        return None
    if len(scaled) != 1 or scaled[0].op != "div" or scaled[0].args[0] is not add:
        return False
    constant = scaled[0].args[1] if len(scaled[0].args) == 2 else None
    return constant if isinstance(constant, float) and constant > 0 else False


def _rank_field(ctx: Ctx, down: ModuleRec, rank: int) -> str | None:
    """The config field (stored name) `down`'s out_features reads at the call building it
    (`<...>.laurel_rank`), when its value is the rank."""
    call = down.site.node if down.site is not None else None
    if not isinstance(call, cst.Call):
        return None
    positional = [a for a in call.args if a.keyword is None]
    sizes = [a for a in call.args if a.keyword is not None and a.keyword.value == "out_features"]
    size = sizes[0] if sizes else positional[1] if len(positional) > 1 else None
    if size is None or not m.matches(size.value, m.Attribute(attr=m.Name())):
        return None
    config = ctx.model.config
    field = config.key(size.value.attr.value)
    return field if config.attrs.get(field) == rank else None
