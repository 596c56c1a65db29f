"""Make the routed experts' activation a softcapped SwiGLU (inkling2's experts)."""

from __future__ import annotations

from codegen.errors import CodegenError
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.clamped_swiglu import SiluProduct, _AddParameters, _ExtendCall
from codegen.transforms.edits import EditError, assigns, run

SOFTCAPPED_SWIGLU = '''
def softcapped_swiglu(
    gate: torch.Tensor, up: torch.Tensor, gate_cap: float, up_cap: float
) -> torch.Tensor:
    """SwiGLU whose sigmoid sees the raw gate while the gate's linear factor and `up` are
    each bounded by a tanh softcap, cap * tanh(x / cap){fp32_doc}."""
{upcast}    capped_gate = torch.tanh({g} / gate_cap) * gate_cap
    capped_up = torch.tanh({u} / up_cap) * up_cap
    return {product}
'''

FIELDS = """
gate_softcap: float = 4.0  # experts: the gate's linear factor bounded to cap * tanh(g / cap)
up_softcap: float = 25.0  # ... and up alike, with a cap of its own
"""


def function_text(fp32: bool) -> str:
    """The module-level `softcapped_swiglu`, in fp32 (inputs upcast, one rounding back) or
    in the inputs' dtype."""
    product = "capped_gate * torch.sigmoid({g}) * capped_up"
    if fp32:
        return SOFTCAPPED_SWIGLU.format(
            fp32_doc=",\n    taken in fp32 and rounded back once",
            upcast="    g, u = gate.float(), up.float()\n",
            g="g",
            u="u",
            product=f"({product.format(g='g')}).to(gate.dtype)",
        )
    return SOFTCAPPED_SWIGLU.format(
        fp32_doc="", upcast="", g="gate", u="up", product=product.format(g="gate")
    )


class SetSoftcappedSwiglu(Transform):
    """The experts' `F.silu(gate) * up` becomes `softcapped_swiglu(gate, up, gate_cap,
    up_cap)`: gate_cap * tanh(gate / gate_cap) * sigmoid(gate) * up_cap * tanh(up / up_cap)
    (inkling2), in fp32 where the analysis read the inputs upcast.

    `caps` is the analysed `ffn.softcaps`: the HF config reads of the two caps and the fp32
    flag. Only the routed experts are rewritten: a dense or shared MLP computing it is
    refused in one line."""

    name = "set_softcapped_swiglu"

    def apply(self, package, features=None, *, caps: dict | None = None) -> None:
        if not caps:
            raise CodegenError("ffn.kind = 'softcapped_swiglu' without its caps (ffn.softcaps)")
        if features is not None and features.get("ffn.source") not in ("experts", None):
            raise CodegenError(
                "a softcapped SwiGLU in a dense or shared MLP: no rule yet (routed experts only)"
            )
        moe_edits.own_experts(package)  # this target's experts differ from the shared ones
        run(package, "model.py", _UseSoftcappedSwiglu())
        moe_edits.insert_before_class(package, "model.py", "Experts", function_text(caps["fp32"]))
        run(package, "model.py", _AddParameters("Experts", ("gate_cap: float", "up_cap: float")))
        moe_edits.insert_statements(
            package,
            "Experts",
            "__init__",
            assigns("self.num_experts"),
            "self.gate_cap = gate_cap\nself.up_cap = up_cap",
        )
        run(package, "model.py", _ExtendCall("Experts", ("args.gate_softcap", "args.up_softcap")))
        run(package, "model.py", SetClassDocstring("Experts", _docstring))
        moe_edits.add_args_fields(package, FIELDS.strip())
        moe_edits.add_config_kwargs(
            package, {"gate_softcap": caps["gate"], "up_softcap": caps["up"]}
        )


def _docstring(old: str | None) -> str:
    text = old or "Routed experts."
    if "SwiGLU" not in text:
        raise EditError("the Experts docstring does not name its SwiGLU activation")
    return text.replace("SwiGLU", "softcapped-SwiGLU", 1)


class _UseSoftcappedSwiglu(SiluProduct):
    """`F.silu(<gate>) * <up>` in Experts.forward -> `softcapped_swiglu(<gate>, <up>, ...)`."""

    def replace(self, gate: str, up: str) -> str:
        return f"softcapped_swiglu({gate}, {up}, self.gate_cap, self.up_cap)"
