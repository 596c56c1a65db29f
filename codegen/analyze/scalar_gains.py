"""Learned scalars a feed-forward multiplies in (`ffn.scalar_gain`).

A parameter of a single element that an MLP, an MoE block or its router multiplies into
what it computes (inkling's `global_scale` on the router's weights and on the dense MLP's
output) is a trained gain: it starts at one, so a toy initialised as HF does hides it, and a
package without it would run a checkpoint's trained value as one. No fact states it and no
rule builds it, so each is named (path in the layer, site of the product) on every kind of
feed-forward the layers build as configured.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.detect_ffn import ffn_modules
from codegen.analyze.evaluate import ModuleListRec, ModuleRec, ParamRec
from codegen.analyze.roles import MLP


def detect(ctx: Ctx) -> str | None:
    """`ffn.output_gain`: the attribute of the dense MLP's output gain, else None; other
    gains are named unsupported."""
    found: dict[str, str] = {}  # path in the layer -> site of the product
    seen: set[int] = set()
    gains = set()
    for _, (kind, rec, path) in sorted(ffn_modules(ctx).items()):
        if id(rec) in seen or not isinstance(rec, ModuleRec) or rec.cls is None:
            continue
        seen.add(id(rec))
        gain = _output_gain(ctx, rec) if kind == MLP else None
        if gain is not None:
            gains.add(gain[0])
            ctx.cite("ffn.output_gain", gain[1])
        for name, param, owner in _params(rec, path):
            if not _scalar(param) or owner.cls is None:
                continue
            if gain is not None and owner is rec and rec.attrs.get(gain[0]) is param:
                continue
            for t in ctx.trace(owner).terms:
                if t.op == "mul" and any(
                    isinstance(a, Term) and a.op == "param" and a.module is param for a in t.args
                ):
                    found.setdefault(name, t.site.cite() if t.site else ctx.class_site(owner))
                    break
    if found:
        names = ", ".join(found)
        ctx.unsupported(
            "ffn.scalar_gain",
            f"learned one-element gains multiplied into the feed-forward: {names}: no rule yet"
            " (a package would run the trained value as one)",
            next(iter(found.values())),
        )
    return gains.pop() if len(gains) == 1 else None


def _output_gain(ctx: Ctx, rec: ModuleRec) -> tuple[str, str] | None:
    """(attribute, site) of a one-element parameter of `rec` its forward's result is the
    product with: `return down(...) * self.global_scale`."""
    result = ctx.trace(rec).result
    if not isinstance(result, Term) or result.op != "mul" or len(result.args) != 2:
        return None
    for arg in result.args:
        if isinstance(arg, Term) and arg.op == "param" and isinstance(arg.module, ParamRec):
            name = next((n for n, v in rec.attrs.items() if v is arg.module), None)
            if name is not None and _scalar(arg.module):
                return name, result.site.cite() if result.site else ctx.class_site(rec)
    return None


def _scalar(p: ParamRec) -> bool:
    """One element: shape (1,) (or (1, 1)...), or () when built from a number (an unread
    shape is () too, and no finding)."""
    if p.kind != "parameter" or not isinstance(p.shape, tuple):
        return False
    if not p.shape:
        return p.value is not None
    return all(isinstance(d, int) and not isinstance(d, bool) and d == 1 for d in p.shape)


def _params(rec: ModuleRec, path: str, depth: int = 0):
    for name, child in rec.children():
        sub = f"{path}.{name}" if path else name
        if isinstance(child, ParamRec):
            yield sub, child, rec
        elif isinstance(child, ModuleRec) and depth < 3:
            yield from _params(child, sub, depth + 1)
        elif isinstance(child, ModuleListRec) and depth < 3:
            for i, item in enumerate(child.items[:1]):
                if isinstance(item, ModuleRec):
                    yield from _params(item, f"{sub}.{i}", depth + 1)
