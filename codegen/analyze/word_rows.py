"""Rows the word table has past the vocabulary the head predicts.

`nn.Embedding(config.vocab_size + 1, ...)` beside `nn.Linear(hidden, config.vocab_size)`:
the input ids reach one row more than the logits have columns (an id only ever fed in, a
padding or begin token of its own). A package whose table is as wide as the head cannot load
the checkpoint. Read where the table is built: its row count a literal `+ N` on an expression,
and, as the static instantiation evaluated them, the table N rows taller than the head is wide.
"""

from __future__ import annotations

import libcst as cst

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec

KEY = "embedding.extra_rows"


def detect(ctx: Ctx, table: ModuleRec | None, head: ModuleRec | None) -> int:
    """N for a word table built with `<rows> + N` rows, N more than `head` has outputs."""
    call = table.site.node if table is not None and table.site is not None else None
    if not isinstance(call, cst.Call) or not isinstance(head, ModuleRec) or not call.args:
        return 0
    first = call.args[0]
    if first.keyword is not None or first.star:
        return 0
    added = first.value
    if not (
        isinstance(added, cst.BinaryOperation)
        and isinstance(added.operator, cst.Add)
        and isinstance(added.right, cst.Integer)
    ):
        return 0
    extra = int(added.right.value)
    rows = table.args[0] if table.args else None
    width = head.args[1] if len(head.args) > 1 else head.kwargs.get("out_features")
    if not (isinstance(rows, int) and isinstance(width, int)) or rows - width != extra:
        return 0
    ctx.cite(KEY, f"{table.site.cite()} ({rows} rows, {width} logits)")
    return extra
