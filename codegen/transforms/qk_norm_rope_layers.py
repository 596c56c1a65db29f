"""The q/k norm runs only on the layers that apply RoPE (Llama4's NoPE layers skip it)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, dotted, statements

GUARD = "if rope is not None:  # RoPE layers only: NoPE layers keep q and k unnormed\n    pass"


class QkNormRopeLayers(Transform):
    """In `Attention.forward`, the statement applying `self.q_norm` / `self.k_norm` runs
    under `if rope is not None:` (a NoPE layer is handed no rope tables), as HF builds the
    q/k norm only where the layer rotates. Runs after `add_nope_layers`."""

    name = "qk_norm_rope_layers"

    def apply(self, package, features=None) -> None:
        edit = _Guard()
        package.edit("model.py", edit)
        if not edit.hits and not edit.guarded:
            raise EditError("Attention.forward applies no self.q_norm / self.k_norm")
        params = m.findall(
            package.module("model.py"),
            m.FunctionDef(
                name=m.Name("forward"),
                params=m.Parameters(
                    params=[m.ZeroOrMore(), m.Param(name=m.Name("rope")), m.ZeroOrMore()]
                ),
            ),
        )
        if not params:
            raise EditError("Attention.forward takes no `rope` (run add_nope_layers first)")


_NORM_CALL = m.Call(func=dotted("self.q_norm") | dotted("self.k_norm"))
_GUARDED = m.If(test=m.Comparison(left=m.Name("rope")))


class _Guard(cst.CSTTransformer):
    def __init__(self):
        super().__init__()
        self.hits = self.guarded = 0
        self._scope: list[str] = []

    def visit_ClassDef(self, node):
        self._scope.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._scope.pop()
        return updated

    def visit_FunctionDef(self, node):
        self._scope.append(node.name.value)

    def leave_FunctionDef(self, original, updated):
        inside = self._scope[-2:] == ["Attention", "forward"]
        self._scope.pop()
        if not inside:
            return updated
        body = list(updated.body.body)
        for i, statement in enumerate(body):
            if m.matches(statement, _GUARDED) and m.findall(statement, _NORM_CALL):
                self.guarded += 1
                return updated
            if isinstance(statement, cst.SimpleStatementLine) and m.findall(statement, _NORM_CALL):
                (guard,) = statements(GUARD)
                body[i] = guard.with_changes(
                    body=guard.body.with_changes(body=[statement.with_changes(leading_lines=[])]),
                    leading_lines=statement.leading_lines,
                )
                self.hits += 1
                return updated.with_changes(body=updated.body.with_changes(body=body))
        return updated
