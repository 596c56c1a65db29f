"""Clamp the routed experts' gate and up branches before their SwiGLU product."""

from __future__ import annotations

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._clamp_edits import clamp_product
from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import run


class ClampExperts(Transform):
    """The experts' `F.silu(gate) * up` becomes
    `F.silu(gate.clamp(max=self.limit)) * up.clamp(-self.limit, self.limit)` (HY-V4's routed
    experts beside a dense MLP that does not clamp; DeepSeek-V4's beside a shared one that
    does). `limit` is the analysed `ffn.experts_clamp`: the HF config field of the bound,
    read as `swiglu_limit`. Any expert layout: stacked gate and up, or one fused tensor."""

    name = "clamp_experts"

    def apply(self, package, features=None, *, limit: str) -> None:
        moe_edits.own_experts(package)  # this target's experts differ from the shared ones
        clamp_product(package, "Experts", "num_experts", limit)
        run(package, "model.py", SetClassDocstring("Experts", _docstring))


def _docstring(old: str | None) -> str:
    text = old or "Routed experts."
    if "SwiGLU" not in text:
        raise ValueError("the Experts docstring does not name its SwiGLU activation")
    first, newline, rest = text.replace("SwiGLU", "clamped SwiGLU", 1).partition("\n")
    said = "    Each gate is clamped to at most `limit`, each up branch to [-limit, limit]."
    return f"{first}\n\n{said}\n{rest}" if newline else f"{first}\n\n{said}\n    "
