"""Lay a new entry out as the formatter would: one line when it fits, wrapped when not.

Why: copying a neighbour's line breaks is wrong both ways: a long entry next to one-line
neighbours overflows the line length, and a short entry next to a wrapped neighbour comes
out exploded. ruff/black keep an entry on one line when it fits (a new entry has no magic
trailing comma) and otherwise split its outermost brackets, one element per line with a
trailing comma, recursing into elements that still do not fit; a scalar dict value that
does not fit is wrapped in parentheses. Widths exclude trailing comments (ruff ignores
pragma comments when measuring).

    fits:       "Short": ("short", "Short"),
    too long:   "VeryLongArchitectureForConditionalGeneration": (
                    "very_long_module",
                    "VeryLongArchitectureForConditionalGeneration",
                ),
"""

from __future__ import annotations

import libcst as cst

_MODULE = cst.Module([])
INDENT = "    "


def _code(node: cst.CSTNode) -> str:
    return _MODULE.code_for_node(node)


def _flat(node: cst.BaseExpression) -> str | None:
    """`node` on one line, redundant parentheses dropped; None if it cannot be flattened."""
    if isinstance(node, cst.Tuple):
        items = [_flat(e.value) if isinstance(e, cst.Element) else None for e in node.elements]
        if any(i is None for i in items):
            return None
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"  # type: ignore[arg-type]
    if isinstance(node, cst.Call):
        args = [_flat_arg(a) for a in node.args]
        func = _flat(node.func)
        if func is None or any(a is None for a in args):
            return None
        return func + "(" + ", ".join(args) + ")"  # type: ignore[arg-type]
    text = _code(node.with_changes(lpar=[], rpar=[]) if hasattr(node, "lpar") else node)
    return None if "\n" in text else text.strip()


def _flat_arg(arg: cst.Arg) -> str | None:
    value = _flat(arg.value)
    if value is None:
        return None
    head = f"{arg.keyword.value}=" if arg.keyword is not None else ""
    return f"{arg.star}{head}{value}"


def _render(node: cst.BaseExpression, indent: str, head: str, tail: str, width: int) -> list[str]:
    flat = _flat(node)
    one = f"{indent}{head}{flat}{tail}"
    if len(one) <= width:
        return [one]
    inner = indent + INDENT
    if isinstance(node, cst.Tuple):
        lines = [f"{indent}{head}("]
        for element in node.elements:
            lines += _render(element.value, inner, "", ",", width)  # type: ignore[union-attr]
        return lines + [f"{indent}){tail}"]
    if isinstance(node, cst.Call):
        opening = f"{indent}{head}{_flat(node.func)}("
        args = [_flat_arg(a) for a in node.args]
        hugged = f"{inner}{', '.join(args)}"  # type: ignore[arg-type]
        if len(hugged) <= width:
            return [opening, hugged, f"{indent}){tail}"]
        lines = [opening]
        for arg in node.args:
            key = f"{arg.keyword.value}=" if arg.keyword is not None else ""
            lines += _render(arg.value, inner, f"{arg.star}{key}", ",", width)
        return lines + [f"{indent}){tail}"]
    if head:  # a scalar dict value: parenthesise it on its own line
        return [f"{indent}{head}(", f"{inner}{flat}", f"{indent}){tail}"]
    return [one]


def fit(element: cst.CSTNode, indent: str, width: int) -> cst.CSTNode:
    """`element` (a dict entry or a list element) laid out for a line of `width` columns,
    starting at `indent`; unchanged if it is already one line that fits, or cannot be
    flattened (implicitly concatenated strings across lines, comments inside)."""
    if isinstance(element, cst.DictElement):
        key = _flat(element.key)
        if key is None:
            return element
        head, value = f"{key}: ", element.value
    elif isinstance(element, cst.Element):
        head, value = "", element.value
    else:
        return element
    if _flat(value) is None:
        return element
    current = _code(element.with_changes(comma=cst.MaybeSentinel.DEFAULT))
    lines = _render(value, indent, head, ",", width)
    if len(lines) == 1 and "\n" not in current and len(indent + current + ",") <= width:
        return element  # already one line that fits: keep its exact spelling
    body = "\n".join(lines)
    opening = "{" if isinstance(element, cst.DictElement) else "["
    closing = "}" if opening == "{" else "]"
    parsed = cst.parse_expression(f"{opening}\n{body}\n{closing}")
    return parsed.elements[0].with_changes(comma=element.comma)  # type: ignore[attr-defined]
