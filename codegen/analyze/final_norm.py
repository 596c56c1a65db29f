"""Whether the backbone norms the last layer's output before the head.

Post-norm GPT-1 (openai-gpt) ends on its last layer's own norm: no module outside the layers
is a norm. Read from the module tree, conservatively: the model has no final norm only when
no norm-role module outside the decoder layers exists at all (the embedding norm apart).
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleListRec, ModuleRec
from codegen.analyze.features import UNKNOWN
from codegen.analyze.roles import NORM


def has_final_norm(ctx: Ctx, embedding_norm: str | None, others: tuple = ()) -> bool | str:
    """False when no norm module outside the layers exists (other than the embedding norm
    at `embedding_norm` and the norms at `others`: an embeddings module's, a prediction
    head's) while the layers have norms; unknown when no norm is recognised at all; cited
    at the backbone."""
    model = ctx.model
    layers = {id(layer) for layer in model.layers or ()}
    for path, rec in _outside(model.entry, "", layers, 0):
        if ctx.roles.role(rec) == NORM and path != embedding_norm and path not in others:
            ctx.cite("norm.final", ctx.site(rec))
            return True
    owner = model.stack_owner or model.entry
    inside = any(
        ctx.roles.role(rec) == NORM
        for layer in model.layers or ()
        for _, rec in _outside(layer, "", set(), 0)
    )
    if not inside:  # no norm recognised anywhere: nothing to say about a final one
        ctx.cite("norm.final", f"{ctx.site(owner)} (no norm module recognised)")
        return UNKNOWN
    ctx.cite("norm.final", f"{ctx.site(owner)} (no norm module outside the layers)")
    return False


def _outside(rec, path: str, layers: set, depth: int):
    """(path, module) below `rec`, the decoder layers' subtrees left out. Records may be
    shared (one instance for equal constructor calls), so the walk goes by path, bounded."""
    if depth > 8:
        return
    items = []
    if isinstance(rec, ModuleRec):
        if path:
            yield path, rec
        items = rec.children()
    elif isinstance(rec, ModuleListRec):
        keys = rec.keys if rec.keys is not None else [str(i) for i in range(len(rec.items))]
        items = list(zip(keys, rec.items, strict=False))
    for name, child in items:
        if id(child) in layers:
            continue
        yield from _outside(child, f"{path}.{name}" if path else name, layers, depth + 1)
