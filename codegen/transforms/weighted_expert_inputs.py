"""Scale each token by its routing weight before its experts run, not their outputs after."""

from __future__ import annotations

import re

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run

# the house Experts' per-row routing weight: `weights.flatten()[order, None]`
ROW_WEIGHT = m.Subscript(
    value=m.Call(func=m.Attribute(value=m.Name("weights"), attr=m.Name("flatten")))
)
NOTE = (
    "Each row is scaled by its routing weight before the experts run (Llama4):",
    "expert(weight * x), not weight * expert(x).",
)


def _docstring(old: str | None) -> str:
    """The old docstring with a closing paragraph on where the weight applies."""
    text = (old or "Routed experts.").rstrip().replace("The k weighted outputs", "The k outputs")
    indent = re.search(r"\n( *)\S", text)
    pad = indent.group(1) if indent else "    "
    return text + "\n\n" + "".join(f"{pad}{line}\n" for line in NOTE) + pad


class WeightExpertInputs(Transform):
    """In `Experts.forward`, the routing weight that multiplied each (token, slot) row's
    expert output multiplies the row before the expert instead: the SwiGLU is not linear,
    so expert(w * x) != w * expert(x). The k results are summed as before (in the weights'
    dtype, as HF sums the scaled tokens' outputs)."""

    name = "weight_expert_inputs"

    def apply(self, package, features=None) -> None:
        moe_edits.own_experts(package)
        edit = _MoveWeight()
        package.edit("model.py", edit)
        if edit.moved == 0 and edit.already == 0:
            raise EditError("Experts.forward multiplies no expert output by weights.flatten()")
        if edit.moved:
            run(package, "model.py", SetClassDocstring("Experts", _docstring))


class _MoveWeight(cst.CSTTransformer):
    """`out = <down product> * <row weight>` -> `out = <down product>`, and the rows'
    gather `rows = x[...]` -> `rows = x[...] * <row weight>`."""

    def __init__(self):
        super().__init__()
        self.moved = self.already = 0
        self._stack: list[str] = []

    def visit_ClassDef(self, node):
        self._stack.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._stack.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._stack[-1:] != ["Experts"] or updated.name.value != "forward":
            return updated
        body = list(updated.body.body)
        weight, at = None, None
        for i, statement in enumerate(body):
            assign = _assign(statement)
            if assign is None or m.matches(assign.targets[0].target, m.Name("rows")):
                continue
            value = assign.value
            if m.matches(value, m.BinaryOperation(operator=m.Multiply(), right=ROW_WEIGHT)):
                weight, at = value.right, i
                body[i] = statement.with_changes(body=[assign.with_changes(value=value.left)])
                break
        rows = next(
            (
                i
                for i, s in enumerate(body)
                if (a := _assign(s)) is not None and m.matches(a.targets[0].target, m.Name("rows"))
            ),
            None,
        )
        if rows is None:
            return updated
        if weight is None:
            gathered = _assign(body[rows]).value
            if m.matches(gathered, m.BinaryOperation(operator=m.Multiply(), right=ROW_WEIGHT)):
                self.already += 1
            return updated
        if at < rows:
            return updated
        assign = _assign(body[rows])
        scaled = cst.BinaryOperation(
            left=assign.value,
            operator=cst.Multiply(
                whitespace_before=cst.SimpleWhitespace(" "),
                whitespace_after=cst.SimpleWhitespace(" "),
            ),
            right=weight,
        )
        body[rows] = body[rows].with_changes(body=[assign.with_changes(value=scaled)])
        self.moved += 1
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _assign(statement) -> cst.Assign | None:
    if (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Assign)
        and len(statement.body[0].targets) == 1
    ):
        return statement.body[0]
    return None
