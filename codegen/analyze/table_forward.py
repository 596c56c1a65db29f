"""A word table whose own forward computes with weights beyond its rows.

`embedding.norm`, `embedding.scale` and the absolute positions are read where the backbone
applies them to the table's output. A table class of its own (an `nn.Embedding` subclass
with a `forward`) can do more inside that call: inkling's normed embedding runs an RMSNorm
of its own on every looked-up row. The backbone's trace sees one call, so the analysis would
report the embeddings unnormed and a package would drop the norm; instead each module or
learned parameter the table's forward computes with, besides its rows, is named here
(`embedding.table_forward`, one line with the site of its use). A constant scale or a
buffer (gemma's scaled word embedding) holds no weight and is `embedding.scale`'s.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.detect_embedding import _embedding
from codegen.analyze.evaluate import ModuleRec, ParamRec


def detect(ctx: Ctx) -> None:
    name, table = _embedding(ctx)
    if table is None or table.cls is None:
        return
    if ctx.model.project.find_method(table.cls, "forward") is None:
        return
    trace = ctx.trace(table, inline=False)
    parts: dict[str, str] = {}  # attribute -> what it is
    site = None
    for term in trace.terms:
        target = term.module
        if term.op == "call" and isinstance(target, ModuleRec) and target is not table:
            own = _attribute(table, target)
            if own is not None and _holds_weights(target):
                parts.setdefault(own, target.cls.name if target.cls else target.kind)
                site = site or (term.site.cite() if term.site else None)
        elif term.op == "param" and isinstance(target, ParamRec) and target.kind == "parameter":
            own = _attribute(table, target)
            if own is not None and own != "weight":
                known = target.shape and all(isinstance(d, int) for d in target.shape)
                parts.setdefault(own, f"parameter {tuple(target.shape)}" if known else "parameter")
                site = site or (term.site.cite() if term.site else None)
    if parts:
        what = ", ".join(f"{name}.{own} ({kind})" for own, kind in parts.items())
        ctx.unsupported(
            "embedding.table_forward",
            f"the word table's own forward computes with weights beyond its rows: {what}"
            " applied to the looked-up rows inside the table's call: no rule yet",
            site or ctx.class_site(table),
        )


def _attribute(owner: ModuleRec, value) -> str | None:
    return next((n for n, child in owner.attrs.items() if child is value), None)


def _holds_weights(rec: ModuleRec) -> bool:
    if rec.cls is None and rec.kind in ("Linear", "Embedding", "Conv1d", "LayerNorm"):
        return True
    for child in rec.attrs.values():
        if isinstance(child, ParamRec) and child.kind == "parameter":
            return True
        if isinstance(child, ModuleRec) and _holds_weights(child):
            return True
    return False
