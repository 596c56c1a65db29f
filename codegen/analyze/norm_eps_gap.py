"""Norm epsilons a package cannot take from where the code takes them: named, never dropped.

A package's block and final norms read one `norm_eps`; the `layer_norm_eps` rule lets the
block norms keep a number of the code's own (CTRL's `eps=1e-6`) while the final norm reads the
config's. Any other split would change with the config in one model and not the other:

* block norms of several sources (`eps=1e-5` beside `eps=config.rms_norm_eps`): the package
  gives them all one epsilon;
* a final norm whose source is not the block norms' (the block norms read `config.X`, the
  final norm is at a literal or its class's default, or reads another field, or is at
  another number): the package's final norm reads the block norms' `norm_eps`.

Sources read as "other" (a helper's parameter, a norm class that reads the config itself)
decide nothing here: their value is not read, so they are no evidence of a split. A local the
reading could not follow (`Source.unread`: bound more than once to different things, or to
what is not read) is named instead, for the block, final and q/k norms alike: whether it holds
the config's epsilon or the code's decides the package's, and nothing says which.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.norm_eps_sources import CONSTANT, Source

FEATURE = "norm.eps_sources"
GROUPS = ("block", "final", "qk")  # the norms a package builds with an epsilon of its own


def check(ctx: Ctx, found: dict[str, tuple[Source, ...]]) -> None:
    """Name a split of the block and final norms' epsilon sources no rule realises, else a
    local no reading follows."""
    named = _split(found) or _unread(found)
    if named is not None:
        ctx.unsupported(FEATURE, *named)


def _split(found: dict[str, tuple[Source, ...]]) -> tuple[str, str | None] | None:
    """(what, where) of block norms of several sources, or of a final norm whose source is
    not the block norms' (but for the `layer_norm_eps` rule's case); else None."""
    block = _known(found.get("block", ()))
    final = _known(found.get("final", ()))
    if len({_key(s) for s in block}) > 1:
        said = " | ".join(s.describe() for s in block)
        detail = f"block norms' eps from {said}: a package's block norms read one norm_eps"
        return detail, _sites(block)
    if not block or len(final) != 1 or _key(block[0]) == _key(final[0]):
        return None
    if block[0].how in CONSTANT and final[0].how == "config":
        return None  # the layer_norm_eps rule's case (CTRL, JetMoE)
    detail = (
        f"final norm's eps from {final[0].describe()}, the block norms' from"
        f" {block[0].describe()}: a package's final norm reads the block norms' norm_eps"
    )
    return detail, _sites(block[:1] + final)


def _unread(found: dict[str, tuple[Source, ...]]) -> tuple[str, str | None] | None:
    """(what, where) of the first norm whose epsilon passes through a local no reading
    follows; else None."""
    for group in GROUPS:
        unread = [s for s in found.get(group, ()) if s.unread]
        if unread:
            detail = (
                f"{group} norms' eps from {unread[0].unread}: neither a config field nor a"
                " number read, so a package's norms cannot be told which epsilon to take"
            )
            return detail, _sites(unread[:1])
    return None


def _known(sources) -> list[Source]:
    return [s for s in sources if s.how != "other" and (s.how == "config" or s.value is not None)]


def _key(source: Source) -> tuple:
    """A config field, or the number: a literal and a class default of one value agree."""
    return ("config", source.field) if source.how == "config" else ("number", source.value)


def _sites(sources) -> str | None:
    return "; ".join(s.site for s in sources if s.site) or None
