"""Layer stacks: a causal LM whose module tree holds more than one list of decoder layers.

A package builds one stack of layers run once, in order. A model with several (BLT's local
encoder, global transformer, local decoder and entropy patcher; HRM's two stacks run in
nested cycles, one module reached under two names) is reported unsupported with every
stack's path, instead of being planned from whichever stack looked most like a backbone.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleListRec, ModuleRec
from codegen.analyze.roles import LAYER


def stack_paths(ctx: Ctx) -> list[str]:
    """Attribute paths of every module list holding decoder layers, one per path even where
    two attributes name the same module (no global dedup: only cycles are cut)."""
    found: list[str] = []

    def visit(rec, path: str, above: frozenset) -> None:
        if id(rec) in above:
            return
        above = above | {id(rec)}
        if isinstance(rec, ModuleListRec):
            if any(isinstance(i, ModuleRec) and ctx.roles.role(i) == LAYER for i in rec.items):
                found.append(path)
                return
            for i, item in enumerate(rec.items):
                key = rec.keys[i] if rec.keys is not None else str(i)
                visit(item, f"{path}.{key}", above)
        elif isinstance(rec, ModuleRec):
            for name, child in rec.children():
                visit(child, f"{path}.{name}" if path else name, above)

    visit(ctx.model.entry, "", frozenset())
    return found


def detect(ctx: Ctx) -> None:
    paths = stack_paths(ctx)
    if len(paths) > 1:
        ctx.unsupported(
            "block.stacks",
            f"{len(paths)} layer stacks ({', '.join(paths)}); a package builds one",
            ctx.model.entry_cls.cite(),
        )
