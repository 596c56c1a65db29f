"""Clamp the dense (and shared) MLP's gate and up branches before their SwiGLU product."""

from __future__ import annotations

from codegen.transforms._clamp_edits import clamp_product
from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run

PLAIN = "silu(w1(x)) * w3(x)"
CLAMPED = "silu(w1(x).clamp(max=limit)) * w3(x).clamp(-limit, limit)"


class ClampFeedForward(Transform):
    """FeedForward's `F.silu(gate) * up` becomes
    `F.silu(gate.clamp(max=self.limit)) * up.clamp(-self.limit, self.limit)`: the dense
    layers' MLP and the shared expert (DeepSeek-V4's swiglu_limit). `limit` is the analysed
    `ffn.clamp`, the HF config field of the bound, read as `swiglu_limit`; the routed
    experts are `clamp_experts`' (ffn.experts_clamp)."""

    name = "clamp_feed_forward"

    def apply(self, package, features=None, *, limit: str) -> None:
        clamp_product(package, "FeedForward", "w2", limit)
        run(package, "model.py", SetClassDocstring("FeedForward", _docstring))


def _docstring(old: str | None) -> str:
    text = old or f"SwiGLU: w2({PLAIN})."
    if PLAIN not in text:
        raise EditError("the FeedForward docstring does not state its SwiGLU")
    return text.replace(PLAIN, CLAMPED, 1)
