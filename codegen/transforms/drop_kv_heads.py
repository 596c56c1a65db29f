"""Drop the `n_kv_heads` count where every query head has its own key/value head.

A reference attention is grouped-query: ModelArgs has `n_kv_heads` beside `n_heads`. A
target without GQA (GPT-2, BLOOM, OPT) gets `n_kv_heads=` the same expression as `n_heads=`
in `from_hf_config` (`config_fields`), so the field can take one value only, and
`drop_kv_repeat` has ModelArgs refuse any other. Here the count goes: the attention reads
`n_heads` where it read `n_kv_heads`, the arithmetic that compared the two is folded
(`n_heads // n_heads` is 1, `n + 2 * n` is `3 * n`, a local bound to a number is read as
that number), the refusal goes, and tidy drops the field and its mapping. Run in tidy after
`drop_kv_repeat`; where anything else names `n_kv_heads` (a keyword, a per-layer count) the
package is left as it is.

Before::

    self.n_kv_heads = args.n_kv_heads
    self.wqkv = nn.Linear(args.dim, (args.n_heads + 2 * args.n_kv_heads) * args.head_dim)
    ...
    group = self.n_heads // self.n_kv_heads
    qkv = self.wqkv(x).view(batch, seq, -1, group + 2, self.head_dim)

After::

    self.wqkv = nn.Linear(args.dim, 3 * args.n_heads * args.head_dim)
    ...
    qkv = self.wqkv(x).view(batch, seq, -1, 3, self.head_dim)
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.drop_kv_repeat import _same_counts
from codegen.transforms.edits import findall

_KV = "n_kv_heads"
_OWNERS = ("self", "args")
_TAKES_COUNT = m.SimpleStatementLine(
    body=[
        m.Assign(
            targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(_KV)))],
            value=m.Attribute(value=m.Name("args"), attr=m.Name(_KV)),
        )
    ]
)
# drop_kv_repeat's refusal in ModelArgs.__post_init__: `if self.n_kv_heads != self.n_heads:`
_REFUSAL = m.If(
    test=m.Comparison(
        left=m.Attribute(value=m.Name("self"), attr=m.Name(_KV)),
        comparisons=[
            m.ComparisonTarget(
                m.NotEqual(), m.Attribute(value=m.Name("self"), attr=m.Name("n_heads"))
            )
        ],
    )
)


class DropKvHeads(Transform):
    """Where `from_hf_config` gives `n_kv_heads` the expression it gives `n_heads`, the
    package reads `n_heads` alone: the kv count, its refusal and the arithmetic comparing the
    two counts go."""

    name = "drop_kv_heads"

    def apply(self, package, features=None) -> None:
        if not {"args.py", "model.py"} <= set(package.files):
            return
        if not _same_counts(package.module("args.py")):
            return
        model = package.module("model.py").visit(_Specialised())
        args = package.module("args.py").visit(_WithoutRefusal())
        if _names_kv(model) or _names_kv(args, besides_field=True):
            return  # another use of the count (a keyword, a per-layer list): kept
        package.files["model.py"], package.files["args.py"] = model, args


def _names_kv(module: cst.Module, besides_field: bool = False) -> bool:
    """Whether `module` names `n_kv_heads` (as an attribute, a name or a keyword); in args.py
    the field and its `from_hf_config` mapping, which tidy drops, do not count."""
    found = findall(module, m.Name(_KV))
    if besides_field:
        field = findall(module, m.AnnAssign(target=m.Name(_KV)))
        keyword = findall(module, m.Arg(keyword=m.Name(_KV)))
        return len(found) > len(field) + len(keyword)
    return bool(found)


class _QueryCounts(cst.CSTTransformer):
    """`self.n_kv_heads` / `args.n_kv_heads` read `n_heads`."""

    def leave_Attribute(self, original, updated):
        if m.matches(updated, m.Attribute(value=m.OneOf(*map(m.Name, _OWNERS)), attr=m.Name(_KV))):
            return updated.with_changes(attr=cst.Name("n_heads"))
        return updated


class _WithoutRefusal(cst.CSTTransformer):
    """The refusal of `n_kv_heads != n_heads` leaves `__post_init__`, which goes if empty."""

    def leave_If(self, original, updated):
        return cst.RemoveFromParent() if m.matches(original, _REFUSAL) else updated

    def leave_FunctionDef(self, original, updated):
        if updated.name.value == "__post_init__" and not updated.body.body:
            return cst.RemoveFromParent()
        return updated


def _int(node) -> int | None:
    return int(node.value) if isinstance(node, cst.Integer) else None


def _bare(node: cst.BaseExpression) -> cst.BaseExpression:
    """`node` without its parentheses (an operand of `*` whose own operator binds as tight)."""
    return node.with_changes(lpar=[], rpar=[]) if node.lpar else node


class _Specialised(cst.CSTTransformer):
    """Each statement reading `n_kv_heads` reads `n_heads` and is folded (`_Folded`); in a
    function, a local such a statement now assigns a number (`group = 1`) is read as that
    number in the statements after it, folded in turn, and its assignment goes."""

    def leave_SimpleStatementLine(self, original, updated):
        if m.matches(original, _TAKES_COUNT):
            return cst.RemoveFromParent()
        counted = updated.visit(_QueryCounts())
        if counted.deep_equals(updated):
            return updated
        return counted.visit(_Folded())

    def leave_FunctionDef(self, original, updated):
        body, numbers = [], {}
        targets = [t.target.value for t in findall(original, m.AssignTarget(target=m.Name()))]
        for statement, was in zip(updated.body.body, _statements_of(original), strict=False):
            if numbers:
                inlined = statement.visit(_Numbers(numbers))
                if not inlined.deep_equals(statement):
                    statement = inlined.visit(_Folded())
            number = _number_assigned(statement)
            if (
                number is not None
                and targets.count(number[0]) == 1
                and was is not None
                and not was.deep_equals(statement)
            ):
                numbers[number[0]] = number[1]
                continue
            body.append(statement)
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _statements_of(function: cst.FunctionDef) -> list:
    """The original statements, aligned with the updated ones (a removed statement leaves
    none: see `leave_SimpleStatementLine`)."""
    return [s for s in function.body.body if not m.matches(s, _TAKES_COUNT)]


_NUMBER = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget(m.Name())], value=m.Integer())]
)


def _number_assigned(statement) -> tuple[str, cst.Integer] | None:
    if not m.matches(statement, _NUMBER):
        return None
    assign = statement.body[0]
    return assign.targets[0].target.value, assign.value


class _Folded(cst.CSTTransformer):
    """`x // x` -> 1, `x + k * x` -> `(k + 1) * x`, `(a * b) * c` -> `a * b * c`, number
    arithmetic folded, parentheses around a number dropped."""

    def leave_BinaryOperation(self, original, updated):
        left, right, op = updated.left, updated.right, updated.operator
        a, b = _int(left), _int(right)
        if a is not None and b is not None:
            value = {cst.Add: a + b, cst.Subtract: a - b, cst.Multiply: a * b}.get(type(op))
            if isinstance(op, cst.FloorDivide) and b:
                value = a // b
            if value is not None:
                return cst.Integer(str(value))
        if isinstance(op, cst.FloorDivide) and _same(left, right):
            return cst.Integer("1")
        if isinstance(op, cst.Add) and m.matches(right, m.BinaryOperation(operator=m.Multiply())):
            k = _int(right.left)
            if k is not None and _same(left, right.right):
                factor = cst.Integer(str(k + 1))
                return cst.BinaryOperation(
                    factor, cst.Multiply(), left, lpar=updated.lpar, rpar=updated.rpar
                )
        if isinstance(op, cst.Multiply) and m.matches(
            left, m.BinaryOperation(operator=m.Multiply())
        ):
            return updated.with_changes(left=_bare(left))
        return updated

    def leave_Integer(self, original, updated):
        return updated.with_changes(lpar=[], rpar=[])


class _Numbers(cst.CSTTransformer):
    """Reads of the names in `values` become their numbers."""

    def __init__(self, values: dict[str, cst.Integer]):
        super().__init__()
        self.values = values

    def leave_Name(self, original, updated):
        return self.values.get(updated.value, updated)

    def leave_Attribute(self, original, updated):
        return updated.with_changes(attr=original.attr)


def _same(a: cst.CSTNode, b: cst.CSTNode) -> bool:
    return _bare(a).deep_equals(_bare(b))
