"""Read-only traversal of libcst trees, without libcst's visit machinery.

`node.visit(visitor)` rebuilds every node it passes (each `_visit_and_replace_children`
constructs and validates a new dataclass), even for a visitor that changes nothing: on the
analyzer's collectors that cost more than parsing the file. `visit(node, visitor)` calls
the same `visit_X` / `leave_X` methods (a `visit_X` returning False skips the subtree) but
only reads the fields; whitespace, commas and parentheses are not entered (no analysis
visitor looks at them). Children come in field order, which is source order except where
libcst declares a field late (a function's decorators after its body): use it for
visitors that collect, not for ones that depend on order.
"""

from __future__ import annotations

import dataclasses

import libcst as cst

_SKIP = {
    "lpar",
    "rpar",
    "comma",
    "semicolon",
    "leading_lines",
    "lines_after_decorators",
    "header",
    "footer",
    "trailing_whitespace",
    "newline",
    "indent",
}
_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = tuple(
            f.name
            for f in dataclasses.fields(kind)
            if f.name not in _SKIP and not f.name.startswith("whitespace")
        )
        _FIELDS[kind] = names
    return names


def children(node: cst.CSTNode):
    """The syntactic child nodes of `node`, in field order."""
    for name in _fields(type(node)):
        value = getattr(node, name)
        if isinstance(value, cst.CSTNode):
            yield value
        elif isinstance(value, tuple | list):
            for item in value:
                if isinstance(item, cst.CSTNode):
                    yield item


def visit(node: cst.CSTNode, visitor: cst.CSTVisitor) -> None:
    """`node.visit(visitor)` for a visitor that only reads (see the module docstring)."""
    if visitor.on_visit(node):
        for child in children(node):
            visit(child, visitor)
    visitor.on_leave(node)
