"""Layer stacks a package cannot build: several stacks, or several attentions per layer.

A package builds one stack of layers run once, in order, each with one attention. A model
with several stacks (BLT's local encoder, global transformer, local decoder and entropy
patcher; HRM's two stacks run in nested cycles, one module reached under two names) is
reported unsupported with every stack's path, instead of being planned from whichever stack
looked most like a backbone; so is a layer holding a list of attentions run in turn
(LongCat-Flash's two attention sublayers, each with its own MLP, beside a shortcut MoE).
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleListRec, ModuleRec
from codegen.analyze.model import layer_slots
from codegen.analyze.roles import ATTENTION, LAYER


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
    _attention_lists(ctx)


def _attention_lists(ctx: Ctx) -> None:
    for layer in ctx.model.layers:
        listed = [
            (name, rec)
            for name, rec in layer_slots(ctx.model, layer).get(ATTENTION, [])
            if name.rsplit(".", 1)[-1].isdigit()
        ]
        if len(listed) > 1:
            names = ", ".join(name for name, _ in listed)
            ctx.unsupported(
                "block.sublayers",
                f"{len(listed)} attention sublayers per layer ({names}); a package layer holds one",
                ctx.class_site(layer),
            )
            return
