"""Clamp the routed experts' gate and up branches before their SwiGLU product."""

from __future__ import annotations

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.clamped_swiglu import SiluProduct, _AddParameters, _ExtendCall
from codegen.transforms.edits import assigns, run

FIELD = "swiglu_limit: float = 7.0  # routed experts: gate clamped to <= it, up to [-it, it]"


class ClampExperts(Transform):
    """The experts' `F.silu(gate) * up` becomes
    `F.silu(gate.clamp(max=self.limit)) * up.clamp(-self.limit, self.limit)` (HY-V4's routed
    experts, beside a dense MLP that does not clamp). `limit` is the analysed
    `ffn.experts_clamp`: the HF config field of the bound, read as `swiglu_limit`."""

    name = "clamp_experts"

    def apply(self, package, features=None, *, limit: str) -> None:
        moe_edits.own_experts(package)  # this target's experts differ from the shared ones
        run(package, "model.py", _Clamp())
        run(package, "model.py", _AddParameters("Experts", ("limit: float",)))
        moe_edits.insert_statements(
            package, "Experts", "__init__", assigns("self.num_experts"), "self.limit = limit"
        )
        run(package, "model.py", _ExtendCall("Experts", ("args.swiglu_limit",)))
        run(package, "model.py", SetClassDocstring("Experts", _docstring))
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"swiglu_limit": f"hf_config.{limit}"})


def _docstring(old: str | None) -> str:
    text = old or "Routed experts."
    if "SwiGLU" not in text:
        raise ValueError("the Experts docstring does not name its SwiGLU activation")
    first, newline, rest = text.replace("SwiGLU", "clamped SwiGLU", 1).partition("\n")
    said = "    Each gate is clamped to at most `limit`, each up branch to [-limit, limit]."
    return f"{first}\n\n{said}\n{rest}" if newline else f"{first}\n\n{said}\n    "


class _Clamp(SiluProduct):
    """`F.silu(<gate>) * <up>` in Experts.forward -> both branches clamped to the limit."""

    def replace(self, gate: str, up: str) -> str:
        return f"F.silu({gate}.clamp(max=self.limit)) * {up}.clamp(-self.limit, self.limit)"
