"""Attention scores enter the softmax unscaled (GPT-Neo): no head_dim ** -0.5 factor."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms._rope_edits import InMethod
from codegen.transforms.base import Transform
from codegen.transforms.edits import expression, is_name, run, set_call_keyword

# `self.head_dim**-0.5`, SDPA's default scale as written-out attention spells it
_DEFAULT_SCALE = m.BinaryOperation(
    left=m.Attribute(value=m.Name("self"), attr=m.Name("head_dim")),
    operator=m.Power(),
    right=m.UnaryOperation(operator=m.Minus(), expression=m.Float("0.5")),
)


class UnscaledAttention(Transform):
    """`Attention` passes `scale=1.0` to SDPA (its default is head_dim ** -0.5); attention
    written out (softcap, sinks) drops its `* self.head_dim**-0.5` factor instead."""

    name = "unscaled_attention"

    def apply(self, package, features=None) -> None:
        run(package, "model.py", _Unscale())


class _Unscale(InMethod):
    def __init__(self):
        super().__init__("Attention", "forward")

    def leave_Call(self, original, updated):
        if self.inside and is_name(updated.func, "F.scaled_dot_product_attention"):
            self.hits += 1
            return set_call_keyword(updated, "scale", expression("1.0"))
        return updated

    def leave_BinaryOperation(self, original, updated):
        if (
            self.inside
            and m.matches(updated.operator, m.Multiply())
            and m.matches(updated.right, _DEFAULT_SCALE)
        ):
            self.hits += 1
            return updated.left.with_changes(lpar=updated.lpar, rpar=updated.rpar)
        return updated
