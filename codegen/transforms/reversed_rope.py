"""Turn q/k by -angle: HF's rotate_half written cat((x2, -x1)), not cat((-x2, x1)) (nanochat)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError

# `apply_rotary(x, cos, sin)`: the shared rotation, the sine third
_ROTATION = m.Call(func=m.Name("apply_rotary"), args=[m.Arg(), m.Arg(), m.Arg(keyword=None)])


class ReversedRope(Transform):
    """Every `apply_rotary(x, cos, sin)` of model.py gets `-sin`.

    The house rotation (x1 * cos - x2 * sin, x2 * cos + x1 * sin) with -sin is
    x * cos + (x2, -x1) * sin, HF's formula term for term; negation is exact, so the result
    is bit-identical in every dtype. The tables and the checkpoint are untouched.
    """

    name = "reversed_rope"

    def apply(self, package, features=None) -> None:
        found = _NegateSine()
        package.edit("model.py", found)
        if not found.hits:
            raise EditError("model.py calls no apply_rotary(x, cos, sin)")


class _NegateSine(cst.CSTTransformer):
    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_Call(self, original, updated):
        if not m.matches(updated, _ROTATION):
            return updated
        self.hits += 1
        x, cos, sin = updated.args
        negated = cst.UnaryOperation(operator=cst.Minus(), expression=sin.value)
        return updated.with_changes(args=[x, cos, sin.with_changes(value=negated)])
