"""q @ k^T and the softmax in fp32, probabilities cast back to v's dtype (flint's eager path)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._attention_edits import set_table_dtype
from codegen.transforms._rope_edits import InMethod
from codegen.transforms.base import Transform
from codegen.transforms.edits import expression, is_name, run

# `q @ k.transpose(...)`: the scores of written-out attention (softcap, sinks)
_SCORES = m.BinaryOperation(
    left=m.Name(),
    operator=m.MatrixMultiply(),
    right=m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("transpose"))),
)


class Fp32AttentionScores(Transform):
    """Written-out attention multiplies `q.float() @ k.float().transpose(...)`, so the scores,
    the mask, the sinks and the softmax run in fp32 (its probabilities are already cast to
    v's dtype before `@ v`, as HF; the model builds the additive mask in fp32 too). SDPA
    gets q, k, v in fp32 and its output is cast back to v's dtype."""

    name = "fp32_attention_scores"

    def apply(self, package, features=None) -> None:
        upcast = _Upcast()
        run(package, "model.py", upcast)
        if upcast.written_out:  # the additive mask the model builds for the scores, too
            set_table_dtype(package, "torch.float32")


def _float(node: cst.BaseExpression) -> cst.Call:
    return cst.Call(func=cst.Attribute(value=node, attr=cst.Name("float")))


class _Upcast(InMethod):
    def __init__(self):
        super().__init__("Attention", "forward")
        self.written_out = False

    def leave_BinaryOperation(self, original, updated):
        if self.inside and m.matches(updated, _SCORES):
            self.hits += 1
            self.written_out = True
            transpose = updated.right
            key = transpose.func.value
            return updated.with_changes(
                left=_float(updated.left),
                right=transpose.with_changes(func=transpose.func.with_changes(value=_float(key))),
            )
        return updated

    def leave_Call(self, original, updated):
        if self.inside and is_name(updated.func, "F.scaled_dot_product_attention"):
            values = [a.value for a in updated.args[:3]]
            if len(values) != 3 or not all(isinstance(v, cst.Name) for v in values):
                return updated
            self.hits += 1
            args = [a.with_changes(value=_float(a.value)) for a in updated.args[:3]]
            call = updated.with_changes(args=[*args, *updated.args[3:]])
            cast = expression(f"x.to({values[2].value}.dtype)")
            return cast.with_changes(func=cast.func.with_changes(value=call))
        return updated
