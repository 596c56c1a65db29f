"""Give the MoE router's linear projection a bias (gpt_oss-style routers)."""

from __future__ import annotations

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import SetKeyword, run


class SetRouterLinearBias(Transform):
    """The router `gate` is built with `bias=True`; the adapter maps `mlp.gate.bias`
    (`rename_hf_keys` follows checkpoints that call the router otherwise, gpt_oss `router`)."""

    name = "set_router_linear_bias"

    def apply(self, package, features=None) -> None:
        run(package, "model.py", SetKeyword("MoE", "__init__", {"gate"}, "bias", "True"))
        moe_edits.insert_rows_after(
            package,
            "layers.{}.moe.gate.weight",
            [moe_edits.row("model.layers.{}.mlp.gate.bias", "layers.{}.moe.gate.bias")],
        )
