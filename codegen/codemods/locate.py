"""Find the one container a selector names in a libcst module.

Why: every codemod first has to answer "which node is the registry?", and must answer it
the same way: not found and ambiguous are user errors naming the file and lines, and a name
bound to something codegen cannot edit (a function call, a comprehension) says so instead of
guessing. Positions come from libcst's `PositionProvider`, not from re-scanning text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.codemods.selector import Selector, discouraged, main_bindings
from codegen.errors import CodegenError

MAPPING_FACTORIES = {"OrderedDict", "collections.OrderedDict", "dict"}
SET_FACTORIES = {"frozenset", "set", "tuple", "list"}
LITERALS = {"Literal", "typing.Literal", "typing_extensions.Literal", "t.Literal"}


@dataclass
class Site:
    """A located container: its kind, the node a codemod rewrites, and where it is."""

    kind: str  # dict | pairs | members | literal | import_lines | import_names | chain
    node: cst.CSTNode
    line: int
    label: str  # how to name it in messages
    extra: dict = field(default_factory=dict)


def dotted(node: cst.CSTNode) -> str | None:
    """`a.b.c` for a Name/Attribute chain, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


def classify(value: cst.BaseExpression) -> tuple[str, cst.CSTNode] | None:
    """The container kind of an expression and the node holding its elements."""
    if isinstance(value, cst.Dict):
        return "dict", value
    if isinstance(value, cst.Set):
        return "members", value
    if isinstance(value, (cst.List, cst.Tuple)):
        return ("pairs" if _is_pair_list(value) else "members"), value
    if isinstance(value, cst.Subscript) and dotted(value.value) in LITERALS:
        return "literal", value
    if isinstance(value, cst.Call) and len(value.args) == 1 and not value.args[0].keyword:
        func, arg = dotted(value.func), value.args[0].value
        if func in MAPPING_FACTORIES and isinstance(arg, (cst.List, cst.Tuple)):
            if _is_pair_list(arg) or not arg.elements:
                return "pairs", arg
        if func in MAPPING_FACTORIES and isinstance(arg, cst.Dict):
            return "dict", arg
        if func in SET_FACTORIES and isinstance(arg, (cst.Set, cst.List, cst.Tuple)):
            return "members", arg
    return None


def _is_pair_list(seq: cst.List | cst.Tuple) -> bool:
    elements = [e.value for e in seq.elements if isinstance(e, cst.Element)]
    return bool(elements) and all(
        isinstance(v, cst.Tuple) and len(v.elements) >= 2 and _is_str(v.elements[0].value)
        for v in elements
    )


def _is_str(node: cst.CSTNode) -> bool:
    return isinstance(node, (cst.SimpleString, cst.ConcatenatedString))


class _Finder(cst.CSTVisitor):
    """Collects every binding of the selected name, and every `if NAME == "...":` chain."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, selector: Selector) -> None:
        self.selector = selector
        self.classes: list[str] = []
        # (line, value, "assign" | "update", comment lines above the statement)
        self.bindings: list[tuple[int, cst.BaseExpression | None, str, list[str]]] = []
        self.chains: list[tuple[int, cst.If]] = []
        self._elifs: set[int] = set()
        self._comments: list[str] = []

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self._comments = [line.comment.value for line in node.leading_lines if line.comment]

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.classes.append(node.name.value)

    def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
        self.classes.pop()

    def _wanted(self, name: str) -> bool:
        sel = self.selector
        if sel.kind != "name" or name != sel.attr:
            return False
        return sel.owner is None or (bool(self.classes) and self.classes[-1] == sel.owner)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if isinstance(target.target, cst.Name) and self._wanted(target.target.value):
                self.bindings.append((self._line(node), node.value, "assign", self._comments))

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if isinstance(node.target, cst.Name) and self._wanted(node.target.value):
            self.bindings.append((self._line(node), node.value, "assign", self._comments))

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value == "update"
            and isinstance(func.value, cst.Name)
            and self._wanted(func.value.value)
            and len(node.args) == 1
            and isinstance(node.args[0].value, cst.Dict)
        ):
            self.bindings.append((self._line(node), node.args[0].value, "update", self._comments))

    def visit_If(self, node: cst.If) -> None:
        if isinstance(node.orelse, cst.If):
            self._elifs.add(id(node.orelse))
        if id(node) in self._elifs or self.selector.kind == "imports":
            return
        if chain_name(node.test) == (
            self.selector.name if self.selector.kind == "chain" else self.selector.attr
        ):
            self.chains.append((self._line(node), node))


def chain_name(test: cst.BaseExpression) -> str | None:
    """NAME for a test `NAME == "..."` (or `NAME in ("...", ...)`), else None; NAME may be
    dotted (`module_config.model_type`)."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return None
    subject = dotted(test.left)
    if subject is None:
        return None
    op, right = test.comparisons[0].operator, test.comparisons[0].comparator
    if isinstance(op, cst.Equal) and _is_str(right):
        return subject
    if isinstance(op, cst.In) and isinstance(right, (cst.Tuple, cst.List, cst.Set)):
        return subject
    return None


def locate(wrapper: MetadataWrapper, selector: Selector, path: str) -> Site:
    """The single container a `NAME`, `Class.NAME` or `if NAME` selector names.

    A plain NAME with no editable binding falls back to an `if NAME == "..."` chain, so
    `model_type = config.model_type` followed by a dispatch chain needs no `if` keyword.
    """
    finder = _Finder(selector)
    wrapper.visit(finder)

    def wanted(line: int) -> bool:
        return selector.line in (None, line)

    sites: list[Site] = []
    uneditable: list[int] = []
    kinds: list[str] = []
    for line, value, kind, comments in finder.bindings:
        if not wanted(line):
            continue
        found = classify(value) if value is not None else None
        if found is None:
            uneditable.append(line)
        else:
            site = Site(found[0], found[1], line, selector.name)
            site.extra["discouraged"] = discouraged(comments) if kind == "update" else None
            sites.append(site)
            kinds.append(kind)
    sites = [sites[i] for i in main_bindings(kinds)]
    if len(sites) == 1 and sites[0].extra["discouraged"] and selector.line is None:
        raise CodegenError(
            f"the only editable binding of '{selector.name}' here extends it in a block whose "
            f"comment says new entries do not go there ({sites[0].extra['discouraged']}); "
            f"register in the main binding, or pick this one with '{selector.name}@"
            f"{sites[0].line}'",
            path=path,
            line=sites[0].line,
        )
    if selector.kind == "chain" or not sites:
        label = f"if {selector.name if selector.kind == 'chain' else selector.attr}"
        sites += [Site("chain", node, line, label) for line, node in finder.chains if wanted(line)]
    if not sites:
        if uneditable:
            raise CodegenError(
                f"'{selector.name}' is bound here to an expression codegen cannot edit "
                "(expected a dict, OrderedDict([...]), set/frozenset/tuple/list, Literal[...] "
                "or an if/elif chain)",
                path=path,
                line=uneditable[0],
            )
        known = container_names(wrapper.module)
        hint = f" (containers here: {', '.join(known[:8])})" if known else ""
        raise CodegenError(f"container '{selector}' not found{hint}", path=path)
    if len(sites) > 1:
        lines = ", ".join(str(s.line) for s in sites)
        raise CodegenError(
            f"ambiguous container '{selector}': bound at lines {lines}; "
            f"pick one with '{selector.name}@LINE'",
            path=path,
            line=sites[0].line,
        )
    return sites[0]


def container_names(module: cst.Module) -> list[str]:
    """Module-level names bound to containers codegen can edit (for "not found" hints)."""
    names = []
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.Assign) and classify(small.value):
                names += [t.target.value for t in small.targets if isinstance(t.target, cst.Name)]
            elif isinstance(small, cst.AnnAssign) and small.value and classify(small.value):
                if isinstance(small.target, cst.Name):
                    names.append(small.target.value)
    return names
