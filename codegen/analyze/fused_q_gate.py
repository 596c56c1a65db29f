"""An output gate cut out of the query projection, and the query projection's input.

A.X-K2's attention computes its output gate with the same matmul as its queries: one
projection of `num_heads * (qk_head_dim + v_head_dim)` rows, viewed per head and split into
the head's query and its gate (`view(b, s, -1, qk + v).split([qk, v], -1)`), then
`o_proj(out * sigmoid(gate.float()))`. Which rows are the gate's decides what a package must
slice, so the layout is read from the data flow, not from names:

- `per_head_q_gate` / `per_head_gate_q`: the projection is viewed with a head axis whose
  size is the sum of the parts, then split on that axis (each head's rows: its query then its
  gate, or the gate first);
- `concatenated_q_gate` / `concatenated_gate_q`: split on the flat output (every query row,
  then every gate row, or the reverse).

The gate part must be one value head wide (the attention output it multiplies); anything
else is `unknown`. `fp32` says whether the sigmoid takes its input upcast (`.float()`), read
from the source, as the trace treats casts as pass-through.

`latent_and_raw` reads the query up-projection's input: A.X-K2 feeds it
`cat([q_norm(latent), latent])`, the compressed query latent normed and as it is.
"""

from __future__ import annotations

import libcst as cst

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.features import UNKNOWN
from codegen.analyze.roles import LINEAR, NORM
from codegen.analyze.router_dtype import _cast_locals, upcast

_SPLIT_NAMES = ("split", "chunk")


def read(rep, sig: Term, fused: Term) -> dict:
    """`gate_layout` and `gate_fp32` of the gate `sig` takes out of the projection call
    `fused` (see the module docstring)."""
    return {"gate_layout": _layout(rep, sig, fused), "gate_fp32": gate_upcast(sig)}


def _layout(rep, sig: Term, fused: Term) -> str:
    split = index = None
    for t in walk(sig):
        if t.op == "index" and t.args and isinstance(t.args[0], Term):
            inner = t.args[0]
            if _is_split(inner) and any(x is fused for x in walk(inner)):
                split, index = inner, t.name
                break
    if split is None or index not in ("0", "1"):
        return UNKNOWN
    views = rep.trace.tracer.views.get(id(fused), [])
    parts = _parts(split, views)
    if parts is None or not all(isinstance(p, int) for p in parts) or len(parts) != 2:
        return UNKNOWN
    order = "gate_q" if index == "0" else "q_gate"
    rows, width = _features(fused.module, 1), _features(rep.o_lin, 0)
    if not rows or not width:
        return UNKNOWN
    if any(len(v) >= 2 and v[-1] == sum(parts) for v in views):  # a head axis, then the parts
        heads = rows // sum(parts)
        if heads * parts[int(index)] != width:
            return UNKNOWN  # each head's gate is not one value head wide
        return f"per_head_{order}"
    if not views and sum(parts) == rows and parts[int(index)] == width:
        return f"concatenated_{order}"
    return UNKNOWN


def _features(rec, index: int) -> int | None:
    """in (0) or out (1) features of a Linear record, when known."""
    value = rec.args[index] if rec is not None and len(rec.args) > index else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_split(t: Term) -> bool:
    return (t.op == "split" and t.name in _SPLIT_NAMES) or (
        t.op == "fn" and t.name.rsplit(".", 1)[-1] in _SPLIT_NAMES
    )


def _parts(split: Term, views: list) -> tuple | None:
    """The two part sizes of `split(x, [a, b])`, or of `chunk(x, 2)` of a view whose last
    size is known (None for others)."""
    args = split.args[1:]
    name = split.name.rsplit(".", 1)[-1]
    if not args:
        return None
    if name == "split" and isinstance(args[0], list | tuple):
        return tuple(args[0])
    last = [v[-1] for v in views if v and isinstance(v[-1], int) and v[-1] > 0]
    if name == "chunk" and args[0] == 2 and last and last[0] % 2 == 0:
        return (last[0] // 2, last[0] // 2)  # equal halves of each viewed row
    return None


def gate_upcast(sig: Term) -> bool:
    """The gate's activation `sig` takes its input upcast (`sigmoid(gate.float())`)."""
    node = getattr(sig.site, "node", None)
    if not isinstance(node, cst.Call) or not node.args:
        return False
    method = getattr(sig.site, "method", None)
    casts = _cast_locals(method) if isinstance(method, cst.FunctionDef) else frozenset()
    return upcast(node.args[0].value, casts)


def latent_and_raw(ctx: Ctx, q_lins: list) -> bool:
    """Whether a query projection's input concatenates a normed latent with the latent
    itself: `cat([norm(lin(x)), lin(x)])` (see the module docstring)."""
    for call in q_lins or ():
        inputs = [a for a in call.args if isinstance(a, Term)]
        if len(inputs) != 1:
            continue
        cat = inputs[0]
        if not (cat.op == "fn" and cat.name.rsplit(".", 1)[-1] in ("cat", "concat")):
            continue
        parts = [a for arg in cat.args if isinstance(arg, list | tuple) for a in arg]
        if len(parts) != 2 or not all(isinstance(p, Term) for p in parts):
            continue
        normed, raw = parts
        if (
            _role(ctx, normed) == NORM
            and _role(ctx, raw) == LINEAR
            and any(x is raw for x in walk(normed))
        ):
            if cat.site is not None:
                ctx.cite("attention.q_latent_raw", cat.site.cite())
            return True
    return False


def _role(ctx: Ctx, term: Term) -> str | None:
    if term.op == "call" and isinstance(term.module, ModuleRec):
        return ctx.roles.role(term.module)
    return None
