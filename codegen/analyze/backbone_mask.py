"""A window set by the decoder's mask alone (PhiMoE): the backbone builds its one causal mask
with a sliding-window mask builder (`create_sliding_window_causal_mask`, picked under the
analysed config) and passes it to every layer, while no attention reads a window itself."""

from __future__ import annotations

from codegen.analyze.context import Ctx

SLIDING = "create_sliding_window_causal_mask"
FULL = ("create_causal_mask",)


def window_everywhere(ctx: Ctx) -> bool:
    """The backbone's only mask is a sliding-window one (under the analysed config)."""
    owner = ctx.model.stack_owner
    if owner is None or owner.cls is None:
        return False
    names = {t.name.rsplit(".", 1)[-1] for t in ctx.trace(owner).terms if t.op == "fn" and t.name}
    return SLIDING in names and not names.intersection(FULL)
