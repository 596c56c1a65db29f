"""Norm each value head after the value projection (gemma4's `v_norm`)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import InsertClassBefore
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, expression, run
from codegen.transforms.norm_weight import PLAIN_RMSNORM

_V_NORM = expression("self.v_norm")
# self.wv(x).view(...): the value projection viewed to heads
_VALUE_HEADS = m.Call(
    func=m.Attribute(
        value=m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("wv"))),
        attr=m.Name("view"),
    )
)
_ROW = ("model.layers.{}.self_attn.v_norm.weight", "layers.{}.attention.v_norm.weight")


class ValueNorm(Transform):
    """The values go through an RMSNorm over each head (`args.head_dim`, `args.norm_eps`)
    after the view to heads, before the attention: `v = self.v_norm(self.wv(x).view(...))`.

    `weight=False` (gemma4) builds the weightless `PlainRMSNorm` (x over its root mean square
    in fp32, cast back) and the checkpoint holds nothing for it; `weight=True` builds the
    house `RMSNorm` and maps its weight in the adapter.
    """

    name = "value_norm"

    def apply(self, package, features=None, *, weight: bool) -> None:
        norm = "RMSNorm" if weight else "PlainRMSNorm"
        code = f"self.v_norm = {norm}(args.head_dim, args.norm_eps)  # over each value head\n"
        after_wo = InsertStatements("Attention", "__init__", assigns("self.wo"), code)
        run(package, "model.py", after_wo)
        hits = edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            lambda node: m.matches(node, _VALUE_HEADS),
            lambda node: cst.Call(func=_V_NORM, args=[cst.Arg(node)]),
            required=False,
        )
        if not hits:
            raise EditError("Attention.forward views no `self.wv(x)` to heads")
        if weight:
            edits.insert_rows_after(package, "layers.{}.attention.wo.weight", [_ROW])
        elif not m.findall(package.module("model.py"), m.ClassDef(name=m.Name("PlainRMSNorm"))):
            run(package, "model.py", InsertClassBefore(PLAIN_RMSNORM))
