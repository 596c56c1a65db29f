"""Turn q and k in fp32, as HF does where its rotary function upcasts them.

cohere2_moe's `apply_rotary_pos_emb` takes q/k to fp32, multiplies them by the cos/sin
tables (already rounded to the model's dtype) and casts the result back once; olmo3's and
beam's tables come in fp32 (the rotary embedding casts them to no dtype), so q times them is
fp32 maths too, on unrounded tables. Rotating in
bf16 instead rounds every product: a small error, but enough to flip an MoE router's top-k
choice on tokens HF routes the other way. In fp32 every added cast is a no-op.
"""

from __future__ import annotations

import libcst as cst

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, code_of, expression, run

# HF's tables are in the model's dtype; the maths on them in fp32
ROUND_TABLES = "{cos}, {sin} = {cos}.to({x}.dtype), {sin}.to({x}.dtype)"


def _rotates(call: cst.Call) -> bool:
    """A call of the package's rotation: `apply_rotary*(x, cos, sin)` or `self.rotate(...)`."""
    name = code_of(call.func)
    return (name.startswith("apply_rotary") or name == "self.rotate") and len(call.args) == 3


class RopeInFp32(Transform):
    """Every rotation call in Attention.forward, `apply_rotary(q, cos, sin)`, becomes
    `apply_rotary(q.float(), cos, sin).to(q.dtype)`, after `cos, sin` are rounded to q's
    dtype as HF's rotary embedding returns them."""

    name = "rope_fp32"

    def apply(self, package, features=None, *, tables_fp32: bool = False) -> None:
        """`tables_fp32`: HF hands the tables on in fp32 (olmo3, beam), never rounded: they
        stay as the package's rotary embedding computes them."""
        finder = _Wrap()
        if not run(package, "model.py", finder, required=False):
            raise EditError("Attention.forward calls no apply_rotary(x, cos, sin)")
        if not tables_fp32:
            run(package, "model.py", _RoundTables(finder.first))


class _Wrap(ScopedTransformer):
    def __init__(self) -> None:
        super().__init__("Attention", "forward")
        self.first: tuple[str, str, str] | None = None  # (x, cos, sin) of the first call

    def leave_Call(self, original, updated):
        if not (self.in_scope() and _rotates(updated)):
            return updated
        x, cos, sin = (code_of(arg.value) for arg in updated.args)
        if not all(_table(arg.value) for arg in updated.args[1:]):
            raise EditError(f"{code_of(updated)}: cos and sin are not plain names")
        if isinstance(updated.args[2].value, cst.Name):  # the tables themselves, not `-sin`
            self.first = self.first or (x, cos, sin)
        self.hits += 1
        arg = updated.args[0]
        upcast = arg.with_changes(value=expression(f"{code_of(arg.value)}.float()"))
        turned = updated.with_changes(args=[upcast, *updated.args[1:]])
        return cst.Call(
            func=cst.Attribute(value=turned, attr=cst.Name("to")),
            args=[cst.Arg(expression(f"{code_of(_dtype_source(arg.value))}.dtype"))],
        )


def _table(node: cst.BaseExpression) -> bool:
    """A table argument: a plain name, or its negation (`-sin`: the rotation undone)."""
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        node = node.expression
    return isinstance(node, cst.Name)


# tensor methods that keep the dtype: `k.unsqueeze(1)` has k's
_SAME_DTYPE = ("unsqueeze", "squeeze", "view", "reshape", "transpose", "expand", "contiguous")


def _dtype_source(node: cst.BaseExpression) -> cst.BaseExpression:
    """The tensor whose dtype `node` has: `k_pe` for `k_pe.unsqueeze(1)` or `q[..., :2]`."""
    while True:
        if isinstance(node, cst.Subscript):
            node = node.value
        elif (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value in _SAME_DTYPE
        ):
            node = node.func.value
        else:
            return node


class _RoundTables(ScopedTransformer):
    """`cos, sin = cos.to(x.dtype), sin.to(x.dtype)` before the first rotation statement."""

    def __init__(self, first: tuple[str, str, str] | None) -> None:
        super().__init__("Attention", "forward")
        self.first = first
        self.done = False

    def leave_IndentedBlock(self, original, updated):
        if self.done or not self.in_scope() or self.first is None:
            return updated
        x, cos, sin = self.first
        body = list(updated.body)
        for index, statement in enumerate(body):
            if _calls_rotation(statement):
                line = ROUND_TABLES.format(x=x, cos=cos, sin=sin)
                body.insert(index, cst.parse_statement(line))
                self.done = True
                self.hits += 1
                return updated.with_changes(body=body)
        return updated


def _calls_rotation(statement) -> bool:
    found = []

    class _Find(cst.CSTVisitor):
        def visit_Call(self, node):
            if isinstance(node.func, cst.Attribute) and isinstance(node.func.value, cst.Call):
                if _rotates(node.func.value):
                    found.append(node)

    if isinstance(statement, cst.SimpleStatementLine):
        statement.visit(_Find())
    return bool(found)
