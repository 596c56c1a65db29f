"""Attention over keys a learned module selects (sparse / indexed attention).

DeepSeek-V3.2-style attention scores the keys with a small learned scorer of its own (an
"indexer" with projections and a norm), keeps the top-k per query and masks the rest. No
reference implements that, and on a short input (fewer keys than k) it attends to every key,
so a dense package would agree with HF there and be wrong on long inputs: the analysis names
it, and the plan stops. Found by structure: inside the attention forward, a child module
that is neither a projection, a norm nor the rotary table, that carries parameters, and whose
output reaches the attention kernel.
"""

from __future__ import annotations

from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.roles import LINEAR, NORM, ROTARY

FEATURE = "attention.key_selection"


def detect(ctx, shared: dict) -> None:
    rep = shared.get("rep")
    kernel = getattr(rep, "kernel", None)
    if rep is None or kernel is None or rep.trace is None:
        return
    children = {id(child): name for name, child in rep.rec.children()}
    reached = {id(t) for t in walk(kernel)}
    for value in kernel.kwargs.values():  # a mask or key indices handed by keyword
        if isinstance(value, Term):
            reached |= {id(t) for t in walk(value)}
    for term in rep.trace.terms:
        module = term.module if term.op == "call" else None
        if not isinstance(module, ModuleRec) or id(module) not in children:
            continue
        if ctx.roles.role(module) in (LINEAR, NORM, ROTARY) or not _learned(ctx, module):
            continue
        if id(term) in reached or any(id(t) in reached for t in _users(rep.trace, term)):
            name = children[id(module)]
            ctx.unsupported(
                FEATURE,
                f"keys selected by a learned scorer ({name}) before the softmax",
                ctx.attr_site(rep.rec, name),
            )
            return


def _learned(ctx, module: ModuleRec) -> bool:
    """The module or one of its children holds a parameter (a projection counts)."""
    for _, child in module.children():
        if isinstance(child, ParamRec):
            return True
        if isinstance(child, ModuleRec) and (
            ctx.roles.role(child) == LINEAR or _learned(ctx, child)
        ):
            return True
    return any(isinstance(v, ParamRec) for v in module.attrs.values())


def _users(trace, source: Term) -> list[Term]:
    """Terms computed from `source`."""
    return [t for t in trace.terms if t is not source and any(x is source for x in walk(t))]
