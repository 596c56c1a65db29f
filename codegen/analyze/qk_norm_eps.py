"""The q/k norms' epsilon, where it is not the block norms'.

A package builds its q/k norms (or the keys' alone: DeepSeek-V4's `kv_norm`) with the block
norms' epsilon (`args.norm_eps`; the final norm's where the block norms are at a number of
the code's own, `norm.layer_eps`). The code may give them another: a config field of their own
(`eps=config.kv_norm_eps`) or a number where the block norms read a field. Both are read from
the construction sites as the block norms' are (`norm_eps.eps_field`, else the value
`norm_eps.norm_eps` finds): the same source is None (nothing to do); another is
{"field": the config field or None, "value": its value}; a q/k norm whose source neither
reads (nor is the block norms' own) is "other", as are q and k norms of different sources.
"""

from __future__ import annotations

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.model import layer_slots
from codegen.analyze.norm_eps import eps_field, norm_eps
from codegen.analyze.norm_eps_sources import final_norm
from codegen.analyze.roles import NORM


def qk_norms(shared: dict) -> tuple[ModuleRec, ...]:
    """The attention's q and k norms (those it has)."""
    rep = shared.get("rep")
    return tuple(n for n in (rep.q_norm, rep.k_norm) if n is not None) if rep is not None else ()


def detect(ctx: Ctx, shared: dict, layers_own_eps: bool = False) -> dict | str | None:
    """`layers_own_eps`: the block norms are at a number of the code's (`norm.layer_eps`),
    so the package's `norm_eps`, which the q/k norms read, is the final norm's."""
    qk = list(qk_norms(shared))
    block = final_norm(ctx) if layers_own_eps else _block_norm(ctx)
    if not qk or block is None:
        return None
    sources = {_source(ctx, n) for n in qk}
    if sources == {_source(ctx, block)}:
        return None
    site = ctx.site(qk[0])
    if len(sources) > 1 or sources == {None}:
        ctx.cite("attention.qk_norm_eps", f"{site} (an epsilon that is not read)")
        return "other"
    (source,) = sources
    field = source if isinstance(source, str) else None
    value = attr(ctx.model.config, field) if field else source
    said = f"eps=config.{field}" if field else f"eps {value} in the code"
    whose = "the final norm's" if layers_own_eps else "the block norms'"
    ctx.cite("attention.qk_norm_eps", f"{site} ({said}; {whose} is another)")
    return {"field": field, "value": value}


def _source(ctx: Ctx, rec: ModuleRec) -> str | float | None:
    """The config field the norm's epsilon reads, else its number, else None."""
    return eps_field(ctx, rec) or norm_eps(ctx, rec)


def _block_norm(ctx: Ctx) -> ModuleRec | None:
    """The first layer's first block norm (the one `norm.eps_field` is read from)."""
    model = ctx.model
    if not model.layers:
        return None
    norms = layer_slots(model, model.layers[0]).get(NORM, [])
    return norms[0][1] if norms else None
