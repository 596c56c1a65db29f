"""Read-only traversal of libcst trees, without libcst's visit machinery.

`node.visit(visitor)` rebuilds every node it passes (each `_visit_and_replace_children`
constructs and validates a new dataclass), even for a visitor that changes nothing: on the
analyzer's collectors that cost more than parsing the file. `visit(node, visitor)` calls
the same `visit_X` / `leave_X` methods (a `visit_X` returning False skips the subtree) but
only reads the fields; whitespace, commas and parentheses are not entered (no analysis
visitor looks at them). Children come in field order, which is source order except where
libcst declares a field late (a function's decorators after its body): use it for
visitors that collect, not for ones that depend on order. `findall(node, matcher)` is
libcst's `matchers.findall` for reads: the same nodes in the same (source) order, without
the rebuilt tree. `walk(node)` is a plain pre-order generator over `bare_children`
(`children` without punctuation), for readers of names, values and statements.

Node types are tested by exact type against per-type tables: `isinstance(x, cst.CSTNode)`
goes through ABCMeta's check, and these run for every field of every node walked.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import libcst as cst
import libcst.matchers as m

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


class _NodeKinds(dict):
    """type -> is it a libcst node: a plain dict lookup per field (a cached function costs
    a call), filled on first sight of each type."""

    def __missing__(self, kind: type) -> bool:
        self[kind] = found = issubclass(kind, cst.CSTNode)
        return found


_IS_NODE = _NodeKinds()


def _child_list(node: cst.CSTNode, names: tuple[str, ...]) -> list[cst.CSTNode]:
    out: list[cst.CSTNode] = []
    for name in names:
        value = getattr(node, name)
        kind = type(value)
        if kind is tuple or kind is list:
            out.extend(value)  # libcst's sequence fields hold nodes only
        elif _IS_NODE[kind]:
            out.append(value)
    return out


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The syntactic child nodes of `node`, in field order."""
    return _child_list(node, _fields(type(node)))


# What `children` keeps that a reader of names, values and statements never needs
# (`Attribute.dot`, `Param.equal`, ...): left out of `bare_children`, which spares a visit per
# attribute on the walks config switches make over every reachable function.
_PUNCTUATION = frozenset(("equal", "dot", "colon", "star", "asynchronous", "leading_whitespace"))
_BARE: dict[type, tuple[str, ...]] = {}


def bare_children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """`children` without punctuation nodes, in field order."""
    kind = type(node)
    names = _BARE.get(kind)
    if names is None:
        names = _BARE[kind] = tuple(f for f in _fields(kind) if f not in _PUNCTUATION)
    return _child_list(node, names)


def walk(node: cst.CSTNode, prune=None):
    """Pre-order over `bare_children`; `prune(n)` true: `n` is yielded but not entered."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if prune is None or current is node or not prune(current):
            nodes = bare_children(current)
            nodes.reverse()
            stack.extend(nodes)


DEFS = frozenset((cst.FunctionDef, cst.ClassDef, cst.Lambda))


def nested_def(node: cst.CSTNode) -> bool:
    """A definition (function, class, lambda): a `prune` for walks of one scope."""
    return type(node) in DEFS


def visit(node: cst.CSTNode, visitor: cst.CSTVisitor) -> None:
    """`node.visit(visitor)` for a visitor that only reads (see the module docstring)."""
    kind = type(visitor)
    if kind.on_visit is cst.CSTVisitor.on_visit and kind.on_leave is cst.CSTVisitor.on_leave:
        _visit_fast(node, visitor, _dispatch(kind))
    else:
        _visit_hooks(node, visitor)


def _visit_hooks(node: cst.CSTNode, visitor: cst.CSTVisitor) -> None:
    if visitor.on_visit(node):
        for child in children(node):
            _visit_hooks(child, visitor)
    visitor.on_leave(node)


def _visit_fast(node: cst.CSTNode, visitor: cst.CSTVisitor, table: dict) -> None:
    """`_visit_hooks` for a visitor with libcst's own `on_visit`/`on_leave`: the same
    `visit_X`/`leave_X` calls, found once per node type instead of by name per node."""
    kind = type(node)
    hooks = table.get(kind)
    if hooks is None:
        hooks = table[kind] = _hooks(type(visitor), kind)
    enter, leave = hooks
    if enter is None or enter(visitor, node) is not False:
        for child in _child_list(node, _fields(kind)):
            _visit_fast(child, visitor, table)
    if leave is not None:
        leave(visitor, node)


@cache
def _dispatch(visitor_type: type) -> dict:
    return {}  # node type -> (visit_X, leave_X) of this visitor class, filled lazily


def _hooks(visitor_type: type, kind: type) -> tuple:
    name = kind.__name__
    return getattr(visitor_type, f"visit_{name}", None), getattr(
        visitor_type, f"leave_{name}", None
    )


# Fields whose source position is not their declaration order (libcst declares them late):
# a decorator comes before its function, a keyword before its value, a ternary's body
# before its test. Layout fields are left out, as everywhere here.
_SOURCE_ORDER: dict[type, tuple[str, ...]] = {
    cst.FunctionDef: ("decorators", "asynchronous", "name", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "bases", "keywords", "body"),
    cst.Arg: ("keyword", "equal", "value"),
    cst.IfExp: ("body", "test", "orelse"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.For: ("asynchronous", "target", "iter", "body", "orelse"),
    cst.With: ("asynchronous", "items", "body"),
    cst.CompFor: ("asynchronous", "target", "iter", "ifs", "inner_for_in"),
}


def findall(node: cst.CSTNode, matcher) -> list[cst.CSTNode]:
    """`libcst.matchers.findall(node, matcher)` without its visitor: every node under `node`
    (itself included) that `matcher` matches, in source order."""
    found: list[cst.CSTNode] = []
    stack = [node] if _IS_NODE[type(node)] else []  # libcst's finds nothing in a sentinel
    while stack:
        current = stack.pop()
        if m.matches(current, matcher):
            found.append(current)
        kind = type(current)
        nodes = _child_list(current, _SOURCE_ORDER.get(kind) or _fields(kind))
        nodes.reverse()
        stack.extend(nodes)
    return found
