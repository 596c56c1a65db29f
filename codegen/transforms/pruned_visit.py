"""`module.visit(visitor)` that does not enter subtrees the visitor has no handler for.

libcst's `visit` rebuilds every node it passes (each `_visit_and_replace_children`
constructs and validates a new dataclass), so each of the ~80 edits a scaffold makes cost a
full copy of its file. Most edits handle a few node types (`leave_Assign`,
`leave_ImportFrom`): a subtree holding none of them can only come back unchanged, so it is
skipped (libcst's own `on_visit` -> False) and keeps its identity. The result is the very
tree libcst's visit returns; handlers see the same nodes in the same order.

A visitor that overrides the generic hooks (`on_visit`, `on_leave`, ...) may act on any
node, so it gets libcst's full visit. Which node types a subtree holds is memoised per node
in a `TypeIndex` (nodes are immutable, so a skipped subtree's entry stays true in the
trees later edits return).
"""

from __future__ import annotations

import dataclasses

import libcst as cst

_GENERIC = ("on_visit", "on_leave", "on_visit_attribute", "on_leave_attribute")
_BASES = (cst.CSTTransformer, cst.CSTVisitor)
_HANDLED: dict[type, frozenset[str] | None] = {}
_FIELDS: dict[type, tuple[str, ...]] = {}


def handled_types(kind: type) -> frozenset[str] | None:
    """The node type names `kind` (a visitor class) has `visit_X`/`leave_X` handlers for;
    None when it overrides a generic hook (then every node may matter)."""
    if kind in _HANDLED:
        return _HANDLED[kind]
    base = next((b for b in _BASES if issubclass(kind, b)), None)
    found: frozenset[str] | None = None
    if base is not None and all(getattr(kind, h) is getattr(base, h) for h in _GENERIC):
        names = set()
        for attr in dir(kind):
            if not attr.startswith(("visit_", "leave_")):
                continue
            if getattr(kind, attr) is getattr(base, attr, None):
                continue
            names.add(attr[6:].split("_", 1)[0])  # visit_FunctionDef_body -> FunctionDef
        found = frozenset(names)
    _HANDLED[kind] = found
    return found


def _fields(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return names


class TypeIndex:
    """Node -> the type names in its subtree, memoised (held with the node, so an id is
    never reused while its entry lives)."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[cst.CSTNode, frozenset[str]]] = {}

    def types(self, node: cst.CSTNode) -> frozenset[str]:
        hit = self._memo.get(id(node))
        if hit is not None and hit[0] is node:
            return hit[1]
        kind = type(node)
        names = {kind.__name__}
        for name in _fields(kind):
            value = getattr(node, name)
            if type(value) in _SEQUENCES:
                for item in value:
                    if _is_node(type(item)):
                        names |= self.types(item)
            elif _is_node(type(value)):
                names |= self.types(value)
        found = _interned.setdefault(frozenset(names), frozenset(names))
        self._memo[id(node)] = (node, found)
        return found


_SEQUENCES = (tuple, list)
_NODE_KINDS: dict[type, bool] = {}
_interned: dict[frozenset, frozenset] = {}  # one set object per distinct content


def _is_node(kind: type) -> bool:
    """issubclass(kind, CSTNode), once per class (CSTNode is an ABC: isinstance is slow)."""
    found = _NODE_KINDS.get(kind)
    if found is None:
        found = _NODE_KINDS[kind] = issubclass(kind, cst.CSTNode)
    return found


def visit(node, visitor, index: TypeIndex | None = None):
    """`node.visit(visitor)`, skipping subtrees without a node type `visitor` handles."""
    wanted = handled_types(type(visitor))
    if wanted is None:
        return node.visit(visitor)
    index = index if index is not None else TypeIndex()
    generic = visitor.on_visit

    def on_visit(child: cst.CSTNode) -> bool:
        if wanted.isdisjoint(index.types(child)):
            return False  # no handler below: libcst returns the subtree as it is
        return generic(child)

    visitor.on_visit = on_visit
    try:
        return node.visit(visitor)
    finally:
        del visitor.on_visit
