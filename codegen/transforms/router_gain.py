"""A learned one-element gain on the router's weights (inkling's `gate.global_scale`)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns, code_of

BUILD = "self.router_gain = nn.Parameter(torch.ones(1))  # learned, on the routing weights"
INIT = '''
def init_parameters(self, std: float) -> None:
    """The router's gain starts at one (the rest by the table)."""
    nn.init.ones_(self.router_gain)
'''
SCALED = "weights = weights * self.routed_scaling"
GAINED = "weights = weights * self.routed_scaling * self.router_gain.float()"
GAIN = "weights = weights * self.router_gain.float()"


class RouterGain(Transform):
    """The MoE block holds `router_gain`, a one-element parameter starting at one that its
    `route` multiplies into the weights (in fp32, after the routed scaling); the adapter maps
    the router's `gain` attribute (the analysed `moe.router_gain`) beside its weight. Kept in
    fp32 by `keep_fp32_params` where HF keeps it so."""

    name = "router_gain"

    def apply(self, package, features=None, *, gain: str = "") -> None:
        if not gain:
            raise EditError("router_gain needs the router's gain attribute")
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (run add_moe first)")
        moe_edits.insert_statements(package, "MoE", "__init__", assigns("self.gate"), BUILD)
        body = package.render()["model.py"]
        if SCALED in body:
            moe_edits.replace_statement(package, "model.py", "MoE", "route", _is_scaling, GAINED)
        else:
            moe_edits.insert_statements(package, "MoE", "route", _returns, GAIN, before=True)
        edits.add_method_after_init(package, "MoE", INIT)
        moe_edits.rewrite_row(
            package,
            moe_edits.GATE_WEIGHT,
            lambda row, prefix: [
                row,
                moe_edits.row(f"{prefix}.{gain}", "layers.{}.moe.router_gain"),
            ],
        )


def _is_scaling(statement) -> bool:
    return code_of(statement).strip() == SCALED


def _returns(statement) -> bool:
    return code_of(statement).strip().startswith("return ")
