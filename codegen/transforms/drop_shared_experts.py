"""Remove the reference MoE's always-on shared expert: the target's MoE has none."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, run

_SHARED = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("shared_experts")))


class DropSharedExperts(Transform):
    """The MoE block returns the routed experts' output alone: the shared expert the
    reference builds (`self.shared_experts`), the sum with it and its checkpoint rows go
    (LongCat-Flash's MoE has routed and identity experts only)."""

    name = "drop_shared_experts"

    def apply(self, package, features=None) -> None:
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class")
        run(package, "model.py", _DropShared())
        run(package, "model.py", _ReturnDirectly(), required=False)
        moe_edits.drop_rows(package, ".shared_experts.")


class _DropShared(ScopedTransformer):
    """In MoE: `self.shared_experts = ...` removed, `a + self.shared_experts(x)` -> `a`."""

    def __init__(self):
        super().__init__("MoE", None)
        self.built = self.summed = 0

    def leave_SimpleStatementLine(self, original, updated):
        if self.in_scope() and m.matches(
            updated,
            m.SimpleStatementLine(
                body=[
                    m.Assign(
                        targets=[
                            m.AssignTarget(m.Attribute(m.Name("self"), m.Name("shared_experts")))
                        ]
                    )
                ]
            ),
        ):
            self.built += 1
            return cst.RemoveFromParent()
        return updated

    def leave_BinaryOperation(self, original, updated):
        if not self.in_scope() or not isinstance(updated.operator, cst.Add):
            return updated
        if m.matches(updated.right, _SHARED):
            self.summed += 1
            return updated.left
        if m.matches(updated.left, _SHARED):
            self.summed += 1
            return updated.right
        return updated

    def leave_Module(self, original, updated):
        if self.built != 1 or self.summed != 1:
            raise EditError(
                f"MoE builds self.shared_experts {self.built}x and adds it {self.summed}x"
                " (expected once each)"
            )
        self.hits = 1
        return updated


class _ReturnDirectly(ScopedTransformer):
    """`name = <expr>` followed by `return name` (all the sum left) -> `return <expr>`."""

    def __init__(self):
        super().__init__("MoE", "forward")

    def leave_FunctionDef(self, original, updated):
        inside = self.in_scope()
        updated = super().leave_FunctionDef(original, updated)
        if not inside:
            return updated
        body = list(updated.body.body)
        if len(body) < 2:
            return updated
        assign, ret = body[-2], body[-1]
        named = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
        if not (
            m.matches(assign, named)
            and m.matches(ret, m.SimpleStatementLine(body=[m.Return(m.Name())]))
        ):
            return updated
        name = assign.body[0].targets[0].target.value
        if ret.body[0].value.value != name:
            return updated
        self.hits += 1
        value = assign.body[0].value
        body[-2:] = [assign.with_changes(body=[cst.Return(value=value)])]
        return updated.with_changes(body=updated.body.with_changes(body=body))
