"""Set the attention output projection's bias to the target's."""

from __future__ import annotations

from codegen.transforms.base import Transform
from codegen.transforms.edits import SetKeyword, run
from codegen.transforms.qkv_bias import bias_setting, set_adapter_rows

_ROW = ('"model.layers.{}.self_attn.o_proj.bias"', '"layers.{}.attention.wo.bias"')


class SetOutputBias(Transform):
    """`wo` gets `bias=<enabled>` (or `bias=args.<field>` for a config switch); its adapter
    row exists exactly when the bias can."""

    name = "set_o_bias"
    modules = ("wo",)  # the house projection whose bias it sets

    def apply(self, package, features=None, *, enabled: bool | str) -> None:
        value = bias_setting(package, enabled, "output projection bias")
        run(package, "model.py", SetKeyword("Attention", "__init__", {"wo"}, "bias", value))
        set_adapter_rows(package, [_ROW], bool(enabled))
