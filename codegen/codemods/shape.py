"""The shape of a new entry, read from its neighbours.

Why: guides drift ("add `"X": ("x", "X")`" while the file long since holds `"X": "a.x.X"`),
so codegen never assumes a shape. It copies the nearest neighbour with the same number of
values (its quotes, its parentheses and line breaks, its tuple nesting) and only swaps the
leaf strings and names. Values are adapted to the file's style: a `pkg.mod:Class` given
for a file of dotted paths becomes `pkg.mod.Class`, and vice versa.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import libcst as cst

from codegen.errors import CodegenError

_REF = re.compile(r"^[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)?$")
_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
LEAVES = (cst.SimpleString, cst.ConcatenatedString, cst.Name, cst.Attribute, cst.Integer)


def leaves(expr: cst.BaseExpression) -> list[cst.BaseExpression] | None:
    """Scalar leaves of an entry value, through nested tuples; None if something else is there."""
    if isinstance(expr, cst.Tuple):
        found: list[cst.BaseExpression] = []
        for element in expr.elements:
            if not isinstance(element, cst.Element):
                return None
            inner = leaves(element.value)
            if inner is None:
                return None
            found += inner
        return found
    return [expr] if isinstance(expr, LEAVES) else None


def text(leaf: cst.BaseExpression) -> str | None:
    """A leaf as the user would type it: a string's value, or a name's dotted text."""
    if isinstance(leaf, (cst.SimpleString, cst.ConcatenatedString)):
        value = leaf.evaluated_value
        return value if isinstance(value, str) else None
    if isinstance(leaf, (cst.Name, cst.Attribute, cst.Integer)):
        return cst.Module([]).code_for_node(leaf)
    return None


def value_texts(expr: cst.BaseExpression | None) -> tuple[str, ...] | None:
    """All leaves of a value as text, or None when the value has non-scalar parts."""
    if expr is None:
        return ()
    found = leaves(expr)
    if found is None:
        return None
    texts = tuple(text(leaf) for leaf in found)
    return None if any(t is None for t in texts) else texts  # type: ignore[return-value]


def render_string(value: str, like: cst.BaseExpression) -> str:
    """`value` as a string literal quoted like `like` (single, double or triple quotes)."""
    quote = '"'
    if isinstance(like, cst.SimpleString):
        raw = like.value.lstrip("rRuUbBfF")
        quote = raw[:3] if raw[:3] in ('"""', "'''") else raw[0]
    body = value.replace("\\", "\\\\").replace(quote[0], "\\" + quote[0])
    body = body.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"{quote}{body}{quote}"


def replace_leaf(leaf: cst.BaseExpression, value: str) -> cst.BaseExpression:
    """A leaf of the same kind holding `value`, keeping the leaf's own parentheses."""
    if isinstance(leaf, (cst.SimpleString, cst.ConcatenatedString)):
        like = leaf if isinstance(leaf, cst.SimpleString) else leaf.left
        return cst.SimpleString(render_string(value, like), lpar=leaf.lpar, rpar=leaf.rpar)
    if isinstance(leaf, cst.Integer) and value.isdigit():
        return cst.Integer(value, lpar=leaf.lpar, rpar=leaf.rpar)
    if not _NAME.match(value):
        raise CodegenError(f"{value!r} is not a Python name, but its neighbours hold names here")
    node = cst.parse_expression(value)
    return node.with_changes(lpar=leaf.lpar, rpar=leaf.rpar)


def fill(expr: cst.BaseExpression, values: Sequence[str]) -> cst.BaseExpression:
    """`expr` with its scalar leaves replaced by `values`, in order; layout kept."""
    queue = list(values)

    def walk(node: cst.BaseExpression) -> cst.BaseExpression:
        if isinstance(node, cst.Tuple):
            return node.with_changes(
                elements=[e.with_changes(value=walk(e.value)) for e in node.elements]
            )
        return replace_leaf(node, queue.pop(0))

    result = walk(expr)
    assert not queue, "fill() called with more values than leaves"
    return result


def nearest(candidates: Sequence[int], index: int) -> list[int]:
    """Candidate indices ordered by distance to an insertion index (previous one first)."""
    return sorted(candidates, key=lambda i: (abs(i - (index - 0.5)), i))


def style(column: Sequence[str]) -> str | None:
    """'colon' if every string in a value column is `mod:attr`, 'dotted' if all are `a.b.c`."""
    if not column:
        return None
    if all(":" in v and _REF.match(v) for v in column):
        return "colon"
    if all(":" not in v and "." in v and _REF.match(v) for v in column):
        return "dotted"
    return None


def adapt(values: Sequence[str], columns: Sequence[Sequence[str]], arity: int) -> list[str]:
    """User values in the file's style: split `mod:Class` into two, convert dotted/colon."""
    values = list(values)
    if len(values) == 1 and arity == 2 and ":" in values[0] and _REF.match(values[0]):
        values = values[0].split(":", 1)
    if len(values) != arity:
        return values
    adapted = []
    for value, column in zip(values, columns, strict=True):
        wanted = style(column)
        if wanted == "dotted" and ":" in value and _REF.match(value):
            value = value.replace(":", ".")
        elif wanted == "colon" and ":" not in value and "." in value and _REF.match(value):
            module, _, attr = value.rpartition(".")
            value = f"{module}:{attr}"
        adapted.append(value)
    return adapted


def is_pragma(comment: cst.Comment | None) -> bool:
    """Trailing comments that are part of an entry's shape (`# noqa: F401`), not prose."""
    if comment is None:
        return False
    body = comment.value.lstrip("#").strip().lower()
    return body.startswith(("noqa", "type: ignore", "pragma", "isort:", "fmt:"))
