"""Queries and keys rescaled to a fixed L2 norm, the keys then scaled per kv head by a learned
vector (zaya's q/k norm).

Found by structure in a child of the attention that is given the queries and the keys (its
first two inputs) and carries one parameter: each input is multiplied by a constant over its
2-norm on the last dim (`x.norm(p=2, dim=-1, keepdim=True)`, floored with `clamp_min`), and
the parameter, one entry per kv head, multiplies the keys' result alone. The constant is
read as a number; where it is the square root of the attention's head size the package says
so (`head_dim ** 0.5`). Anything else gives None: the module stays named by
`attention.qkv_modules`' unsupported line (key_selection).
"""

from __future__ import annotations

import math

from codegen.analyze.dataflow import walk
from codegen.analyze.evaluate import ModuleRec, ParamRec

FEATURE = "attention.l2_qk_norm"


def detect(ctx, shared: dict) -> dict | None:
    """{"module": the child's attribute, "key_scale": its parameter, "scale": "head_dim"
    (the square root of the head size) or the number} or None."""
    rep = shared.get("rep")
    if rep is None:
        return None
    head_dim = rep.rec.attrs.get("head_dim")
    for name, child in rep.rec.children():
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        found = read(ctx, child, rep.rec.attrs.get("num_key_value_heads"))
        if found is None:
            continue
        ctx.cite(FEATURE, ctx.attr_site(rep.rec, name))
        scale = found.pop("scale")
        if isinstance(head_dim, int) and math.isclose(scale, head_dim**0.5, rel_tol=1e-12):
            scale = "head_dim"
        return {"module": name, **found, "scale": scale}
    return None


def read(ctx, rec: ModuleRec, kv_heads) -> dict | None:
    params = {
        n: p for n, p in rec.attrs.items() if isinstance(p, ParamRec) and p.kind == "parameter"
    }
    if len(params) != 1 or any(isinstance(c, ModuleRec) for _, c in rec.children()):
        return None
    ((param_name, param),) = params.items()
    if not isinstance(kv_heads, int) or tuple(param.shape or ()) != (kv_heads,):
        return None
    terms = ctx.trace(rec).terms
    inputs = [t for t in terms if t.op == "input"][:2]
    if len(inputs) != 2:
        return None
    scaled, scales = [], set()
    for source in inputs:
        found = _normalised(terms, source)
        if found is None:
            return None
        scaled.append(found[0])
        scales.add(found[1])
    if len(scales) != 1:
        return None
    uses = [t for t in terms if t.op == "param" and t.module is param]
    multiplied = [
        t
        for t in terms
        if t.op == "mul" and any(u in {id(x) for x in walk(t)} for u in map(id, uses))
    ]
    if (
        len(uses) != 1
        or len(multiplied) != 1
        or not any(a is scaled[1] for a in multiplied[0].args)
    ):
        return None  # the scale multiplies the normalised keys, nothing else
    return {"key_scale": param_name, "scale": scales.pop()}


def _normalised(terms, source):
    """(the term, the constant) of `source * (c / source.norm(p=2, dim=-1).clamp_min(..))`."""
    for term in terms:
        if term.op != "mul" or len(term.args) != 2 or term.args[0] is not source:
            continue
        ratio = term.args[1]
        if getattr(ratio, "op", None) != "div" or len(ratio.args) != 2:
            continue
        constant, floor = ratio.args
        if not isinstance(constant, int | float) or getattr(floor, "op", None) != "fn":
            continue
        norm = floor.args[0] if floor.name == "clamp_min" and floor.args else None
        if (
            getattr(norm, "op", None) == "fn"
            and norm.name == "norm"
            and norm.args
            and norm.args[0] is source
            and norm.kwargs.get("p") == 2
            and norm.kwargs.get("dim") == -1
        ):
            return term, float(constant)
    return None
