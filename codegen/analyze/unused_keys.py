"""Checkpoint keys of modules the causal LM runs but whose output never reaches its logits.

BigBird's causal LM builds its backbone with a pooler: the backbone calls it on the first
token and returns `pooler_output`, which the causal LM never reads, yet its weights are in
every checkpoint. Read from the entry's trace: a weighted module outside the decoder layers
that is called, none of whose calls the logits depend on. The package drops those keys
instead of loading them into parameters it never uses.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.final_norm import _outside
from codegen.analyze.state_dict import module_keys


def detect(ctx: Ctx, other_keys: tuple[str, ...]) -> tuple[str, ...]:
    model = ctx.model
    trace = ctx.trace(model.entry)
    result = trace.result
    logits = result.kwargs.get("logits") if isinstance(result, Term) else None
    if not isinstance(logits, Term):
        return ()
    reaching = {id(t.module) for t in walk(logits) if t.op == "call"}
    called = {id(t.module) for t in trace.terms if t.op == "call"}
    layers = {id(layer) for layer in model.layers or ()}
    if not layers & reaching:
        # the decoder layers always reach the logits: a trace that does not show it (cwm's
        # loop over a slice of the stack) cannot tell what else does, so nothing is unused
        return ()
    unused: list[str] = []
    for path, rec in _outside(model.entry, "", layers, 0):
        if not isinstance(rec, ModuleRec) or id(rec) not in called or id(rec) in reaching:
            continue
        keys = [f"{path}.{key}" for key in module_keys(rec)]
        if keys and set(keys) <= set(other_keys):
            unused += keys
            ctx.cite("state_dict.unused_keys", f"{ctx.site(rec)} ({path}: output unused)")
    return tuple(dict.fromkeys(unused))
