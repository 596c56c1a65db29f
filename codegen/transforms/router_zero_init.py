"""Start the MoE router's weight at zero, as the target's HF `_init_weights` does (AFMoE)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError

METHOD = """
def init_parameters(self, std: float) -> None:
    nn.init.zeros_({weight})  # HF's _init_weights starts the router at zero
"""
LINE = "nn.init.zeros_({weight})  # HF's _init_weights starts the router at zero"


class ZeroInitRouter(Transform):
    """`MoE.init_parameters` zeroes the router projection's weight (`self.gate.weight`, or
    the weight of the reference's `Gate` module), so `init_weights` starts the router
    where HF's `_init_weights` does: every expert scored alike until training moves it.
    Parity of loaded checkpoints is unchanged; the meta-device lifecycle check sees it."""

    name = "zero_init_router"

    def apply(self, package, features=None) -> None:
        model = package.module("model.py").code
        if "class MoE" not in model or "self.gate = " not in model:
            raise EditError("model.py has no MoE with a router `self.gate`")
        weight = "self.gate.weight"
        if edits.find_method(package.module("model.py"), "MoE", "init_parameters"):
            line = LINE.format(weight=weight)
            edits.append_to_method(package, "model.py", "MoE", "init_parameters", line)
        else:
            moe_edits.add_method(package, "model.py", "MoE", METHOD.format(weight=weight))
