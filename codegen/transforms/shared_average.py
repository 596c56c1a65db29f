"""Average the shared experts' output with the routed one instead of adding it.

cohere2_moe's default `shared_expert_combination_strategy` joins the two outputs as
`(routed + shared) / 2`; `add_shared_experts` writes the plain sum, which this halves.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run

# `out = out + self.shared_experts(...)`, at any depth of MoE.forward (an optional shared
# expert adds under `if self.shared_experts is not None:`)
SUM = m.Assign(
    targets=[m.AssignTarget(m.Name("out"))],
    value=m.BinaryOperation(
        left=m.Name("out"),
        operator=m.Add(),
        right=m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("shared_experts"))),
    ),
)


class AverageSharedExperts(Transform):
    """The MoE block's `out = out + self.shared_experts(x)` becomes
    `out = (out + self.shared_experts(x)) / 2`; run after `add_shared_experts`."""

    name = "average_shared_experts"

    def apply(self, package, features=None) -> None:
        if not run(package, "model.py", _Halve(), required=False):
            raise EditError("MoE.forward adds no shared expert output (run add_shared_experts)")


class _Halve(cst.CSTTransformer):
    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # inside MoE.forward
        self.hits = 0

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return node.name.value == "MoE"

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.depth += node.name.value == "forward"

    def leave_FunctionDef(self, original, updated):
        self.depth -= original.name.value == "forward"
        return updated

    def leave_Assign(self, original, updated):
        if not self.depth or not m.matches(updated, SUM):
            return updated
        self.hits += 1
        total = updated.value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return updated.with_changes(
            value=cst.BinaryOperation(left=total, operator=cst.Divide(), right=cst.Integer("2"))
        )
