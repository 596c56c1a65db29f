"""Score the MoE router's sigmoid in the logits' dtype, as HF routers that never upcast do.

LFM2-MoE takes `sigmoid(logits)` in the model's dtype (bf16 in a bf16 model) and adds its
fp32 expert bias to those rounded scores, so only the sum is fp32. A package that upcasts
the logits first scores every expert more finely than HF and, on near ties, picks other
experts (a routing flip, not a rounding difference): the order of the casts is the model.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, run

# `<x>.float().sigmoid()`
_UPCAST_SIGMOID = m.Call(
    func=m.Attribute(
        value=m.Call(func=m.Attribute(attr=m.Name("float")), args=[]), attr=m.Name("sigmoid")
    ),
    args=[],
)
# `scores + self.<bias>`: the selection bias added to the scores
_BIASED = m.BinaryOperation(
    left=m.Name("scores"),
    operator=m.Add(),
    right=m.Attribute(value=m.Name("self")),
)


class _HalfScores(ScopedTransformer):
    def __init__(self):
        super().__init__("MoE", "route")

    def on_leave(self, original, updated):
        if not self.inside:
            return super().on_leave(original, updated)
        if m.matches(updated, _UPCAST_SIGMOID):
            self.hits += 1
            upcast = updated.func.value
            return updated.with_changes(func=updated.func.with_changes(value=upcast.func.value))
        if m.matches(updated, _BIASED):
            self.hits += 1
            return updated.with_changes(left=_float(updated.left), right=_float(updated.right))
        return super().on_leave(original, updated)


def _float(node: cst.BaseExpression) -> cst.Call:
    return cst.Call(func=cst.Attribute(value=node, attr=cst.Name("float")))


class RouterHalfScores(Transform):
    """In `MoE.route`, `scores = logits.float().sigmoid()` becomes `logits.sigmoid()`: the
    scores, the k weights gathered from them and their renormalisation stay in the logits'
    dtype; a selection bias is added in fp32 (`scores.float() + self.<bias>.float()`), as
    HF's bf16 scores plus its fp32 buffer promote. A no-op on fp32 models. Running it twice
    gives the same code."""

    name = "router_half_scores"

    def apply(self, package, features=None) -> None:
        run(package, "model.py", _HalfScores(), required=False)
        sigmoid = m.Call(func=m.Attribute(value=m.Name("logits"), attr=m.Name("sigmoid")))
        if not m.findall(package.module("model.py"), sigmoid):
            raise EditError("model.py: MoE.route scores no `logits.sigmoid()`")
