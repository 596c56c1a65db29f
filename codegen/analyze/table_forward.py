"""A word table whose own forward computes with weights beyond its rows.

`embedding.norm`, `embedding.scale` and the absolute positions are read where the backbone
applies them to the table's output. A table class of its own (an `nn.Embedding` subclass
with a `forward`) can do more inside that call: inkling's normed embedding runs an RMSNorm
of its own on every looked-up row. The backbone's trace sees one call, so the analysis would
report the embeddings unnormed and a package would drop the norm; instead each module or
learned parameter the table's forward computes with, besides its rows, is named here
(`embedding.table_forward`, one line with the site of its use). A constant scale or a
buffer (gemma's scaled word embedding) holds no weight and is `embedding.scale`'s.

One such part is a fact instead: a single norm module of the table's own (a record of the
norm role) that its forward applies to its looked-up rows and returns is the
`embedding.norm` the backbone would have applied outside the table; `detect` returns its HF
module path (`model.embed_tokens.embed_norm`) for `embedding.norm_module`.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.detect_embedding import _embedding
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.roles import NORM


def detect(ctx: Ctx) -> str | None:
    """The HF path of the table's own norm on its rows (see the module docstring), else
    None; any other weight the table's forward computes with is named unsupported."""
    name, table = _embedding(ctx)
    if table is None or table.cls is None:
        return None
    if ctx.model.project.find_method(table.cls, "forward") is None:
        return None
    trace = ctx.trace(table, inline=False)
    norm = _own_norm(ctx, table, trace)
    if norm is not None:
        path = ".".join(p for p in (ctx.model.stack_owner_path, name, norm[0]) if p)
        ctx.cite("embedding.norm", f"{norm[1]} (the table's own norm on its rows)")
        return path
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
    return None


def _own_norm(ctx: Ctx, table: ModuleRec, trace) -> tuple[str, str] | None:
    """(attribute, site) of the one module the table's forward calls besides itself when it
    is a norm applied to the looked-up rows and its output is the table's."""
    calls = [
        t
        for t in trace.terms
        if t.op == "call" and isinstance(t.module, ModuleRec) and t.module is not table
    ]
    params = [t for t in trace.terms if t.op == "param" and t.module is not None]
    if len(calls) != 1 or params or ctx.roles.role(calls[0].module) != NORM:
        return None
    own = _attribute(table, calls[0].module)
    if own is None or trace.result is not calls[0]:
        return None
    return own, calls[0].site.cite() if calls[0].site else ctx.class_site(table)


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
