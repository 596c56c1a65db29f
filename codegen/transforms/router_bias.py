"""Give the MoE router's linear projection a bias (gpt_oss-style routers)."""

from __future__ import annotations

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, SetKeyword, assigns, run

# HF (gpt_oss) draws the router bias like its weight; `init_weights` would start a bias at 0
NORMAL_INIT = 'self.normal_init = ("gate.bias",)  # init_weights: HF draws the router bias normal'


class SetRouterLinearBias(Transform):
    """The router `gate` is built with `bias=True`; the adapter maps `mlp.gate.bias`
    (`rename_hf_keys` follows checkpoints that call the router otherwise, gpt_oss `router`).
    `init_weights` starts that bias normal, as HF does (`normal_init`)."""

    name = "set_router_linear_bias"

    def apply(self, package, features=None) -> None:
        run(package, "model.py", SetKeyword("MoE", "__init__", {"gate"}, "bias", "True"))
        run(
            package,
            "model.py",
            InsertStatements("MoE", "__init__", assigns("self.gate"), NORMAL_INIT),
        )
        moe_edits.insert_rows_after(
            package,
            "layers.{}.moe.gate.weight",
            [moe_edits.row("model.layers.{}.mlp.gate.bias", "layers.{}.moe.gate.bias")],
        )
