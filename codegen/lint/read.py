"""Read registry containers and module definitions with `ast`, never importing anything.

Why `ast` and not libcst here: `codegen lint` runs on every commit and must cost about as
much as starting Python, while reading (not editing) needs no concrete syntax. The
selectors and container kinds are the codemods' (`codegen.codemods.selector`), so lint and
the codemods agree on what a registry is; a test checks both readers on the same fixtures.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from codegen.codemods.selector import Selector, main_bindings

MAPPING_FACTORIES = {"OrderedDict", "collections.OrderedDict", "dict"}
SET_FACTORIES = {"frozenset", "set", "tuple", "list"}
LITERALS = {"Literal", "typing.Literal", "typing_extensions.Literal", "t.Literal"}


@dataclass(frozen=True)
class AstEntry:
    key: str
    values: tuple[str, ...] | None  # None: not plain strings/names
    line: int


@dataclass(frozen=True)
class AstContainer:
    kind: str
    line: int
    entries: tuple[AstEntry, ...]


class Unreadable(Exception):
    """A file lint cannot read or parse; carries the line to report."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Parsed:
    """A parsed file and its lines (import registries are told apart by `# noqa`)."""

    tree: ast.Module
    lines: tuple[str, ...]


def parse_file(path: Path) -> Parsed:
    try:
        source = path.read_text(encoding="utf-8-sig")  # a BOM is not part of the source
    except (OSError, UnicodeDecodeError) as err:
        raise Unreadable(f"cannot read: {err}") from None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise Unreadable(f"syntax error: {err.msg}", err.lineno or 1) from None
    return Parsed(tree, tuple(source.splitlines()))


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def text(node: ast.AST) -> str | None:
    """A leaf as text: a string's value or a dotted name."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
        return str(node.value)
    return dotted(node)


def leaf_texts(node: ast.AST) -> tuple[str, ...] | None:
    if isinstance(node, ast.Tuple):
        found: tuple[str, ...] = ()
        for item in node.elts:
            inner = leaf_texts(item)
            if inner is None:
                return None
            found += inner
        return found
    value = text(node)
    return None if value is None else (value,)


def _classify(value: ast.AST) -> tuple[str, ast.AST] | None:
    if isinstance(value, ast.Dict):
        return "dict", value
    if isinstance(value, ast.Set):
        return "members", value
    if isinstance(value, (ast.List, ast.Tuple)):
        return ("pairs" if _is_pair_list(value) else "members"), value
    if isinstance(value, ast.Subscript) and dotted(value.value) in LITERALS:
        return "literal", value
    if isinstance(value, ast.Call) and len(value.args) == 1 and not value.keywords:
        func, arg = dotted(value.func), value.args[0]
        if func in MAPPING_FACTORIES and isinstance(arg, (ast.List, ast.Tuple)):
            if _is_pair_list(arg) or not arg.elts:
                return "pairs", arg
        if func in MAPPING_FACTORIES and isinstance(arg, ast.Dict):
            return "dict", arg
        if func in SET_FACTORIES and isinstance(arg, (ast.Set, ast.List, ast.Tuple)):
            return "members", arg
    return None


def _is_pair_list(seq: ast.List | ast.Tuple) -> bool:
    return bool(seq.elts) and all(
        isinstance(v, ast.Tuple)
        and len(v.elts) >= 2
        and isinstance(v.elts[0], ast.Constant)
        and isinstance(v.elts[0].value, str)
        for v in seq.elts
    )


def _entries(kind: str, node: ast.AST) -> tuple[AstEntry, ...]:
    found = []
    if kind == "dict":
        for key, value in zip(node.keys, node.values, strict=True):
            if key is not None and text(key) is not None:
                found.append(AstEntry(text(key), leaf_texts(value), key.lineno))
    elif kind == "pairs":
        for item in node.elts:
            texts = leaf_texts(item)
            key = text(item.elts[0])
            if key is not None:
                found.append(AstEntry(key, None if texts is None else texts[1:], item.lineno))
    elif kind in ("members", "literal"):
        items = node.elts if kind == "members" else _literal_items(node)
        for item in items:
            if text(item) is not None:
                found.append(AstEntry(text(item), (), item.lineno))
    return tuple(found)


def _literal_items(node: ast.Subscript) -> list[ast.AST]:
    return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]


def _bindings(tree: ast.Module, selector: Selector) -> list[tuple[int, ast.AST | None, str]]:
    """(line, value, "assign" | "update") for every binding of the selected name."""
    found: list[tuple[int, ast.AST | None, str]] = []

    def visit(node: ast.AST, owner: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            in_class = child.name if isinstance(child, ast.ClassDef) else owner
            wanted = selector.owner is None or owner == selector.owner
            if isinstance(child, ast.Assign) and wanted:
                for target in child.targets:
                    if isinstance(target, ast.Name) and target.id == selector.attr:
                        found.append((child.lineno, child.value, "assign"))
            elif isinstance(child, ast.AnnAssign) and wanted:
                if isinstance(child.target, ast.Name) and child.target.id == selector.attr:
                    found.append((child.lineno, child.value, "assign"))
            elif isinstance(child, ast.Call) and wanted and _is_update(child, selector.attr):
                found.append((child.lineno, child.args[0], "update"))
            visit(child, in_class if isinstance(child, ast.ClassDef) else owner)

    visit(tree, None)
    return found


def _is_update(call: ast.Call, name: str) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "update"
        and isinstance(func.value, ast.Name)
        and func.value.id == name
        and len(call.args) == 1
        and isinstance(call.args[0], ast.Dict)
    )


def _chains(tree: ast.Module, name: str) -> list[ast.If]:
    elifs: set[int] = set()
    tops = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
                elifs.add(id(node.orelse[0]))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and id(node) not in elifs and _chain_name(node.test) == name:
            tops.append(node)
    return tops


def _chain_name(test: ast.AST) -> str | None:
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return None
    subject = dotted(test.left)
    if subject is None:
        return None
    op, right = test.ops[0], test.comparators[0]
    if isinstance(op, ast.Eq) and isinstance(right, ast.Constant) and isinstance(right.value, str):
        return subject
    if isinstance(op, ast.In) and isinstance(right, (ast.Tuple, ast.List, ast.Set)):
        return subject
    return None


def _chain_entries(top: ast.If) -> tuple[AstEntry, ...]:
    """Keys of every branch testing the chain's name; other `elif` tests are skipped."""
    found, node = [], top
    while True:
        if _chain_name(node.test) is not None:
            right = node.test.comparators[0]
            items = right.elts if isinstance(right, (ast.Tuple, ast.List, ast.Set)) else [right]
            for item in items:
                if text(item) is not None:
                    found.append(AstEntry(text(item), None, node.lineno))
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            node = node.orelse[0]
        else:
            return tuple(found)


def _import_containers(parsed: Parsed, package: str) -> list[AstContainer]:
    """Side-effect imports of `package`, told apart by their `# noqa` pragma."""
    tree, lines = parsed.tree, parsed.lines
    prefix = package if package.endswith(".") else package + "."
    grouped: dict[int, list[AstEntry]] = {}
    lists = []
    for node in ast.walk(tree):
        for body_attr in ("body", "orelse", "finalbody"):
            body = getattr(node, body_attr, None)
            if not isinstance(body, list):
                continue
            for stmt in body:
                if not isinstance(stmt, ast.ImportFrom):
                    continue
                name = "." * stmt.level + (stmt.module or "")
                end = getattr(stmt, "end_lineno", stmt.lineno)
                pragma = any(_has_noqa(lines, n) for n in range(stmt.lineno, end + 1))
                if name == package and pragma:
                    entries = tuple(
                        AstEntry(a.name, (), getattr(a, "lineno", stmt.lineno)) for a in stmt.names
                    )
                    lists.append(AstContainer("import_names", stmt.lineno, entries))
                elif name.startswith(prefix) and _has_noqa(lines, stmt.lineno):
                    key = name[len(prefix) :].split(".", 1)[0]
                    grouped.setdefault(id(body), []).append(AstEntry(key, (), stmt.lineno))
    found = lists + [
        AstContainer("import_lines", entries[0].line, tuple(entries))
        for entries in grouped.values()
    ]
    return found


def _has_noqa(lines: tuple[str, ...], number: int) -> bool:
    if not 0 < number <= len(lines):
        return False
    line = lines[number - 1]
    return "#" in line and "noqa" in line.split("#", 1)[1].lower()


def find_containers(parsed: Parsed, selector: Selector) -> list[AstContainer]:
    """Every container `selector` names (one when the file is well-formed).

    Same rules as `codegen.codemods.locate`: a plain NAME with no editable binding falls
    back to an `if NAME == "..."` chain; `@LINE` filters before the fallback.
    """

    def wanted(line: int) -> bool:
        return selector.line in (None, line)

    if selector.kind == "imports":
        return [c for c in _import_containers(parsed, selector.name) if wanted(c.line)]
    found = []
    if selector.kind == "name":
        kinds = []
        for line, value, how in _bindings(parsed.tree, selector):
            classified = _classify(value) if value is not None and wanted(line) else None
            if classified is not None:
                kind, node = classified
                found.append(AstContainer(kind, line, _entries(kind, node)))
                kinds.append(how)
        found = [found[i] for i in main_bindings(kinds)]
    if selector.kind == "chain" or not found:
        subject = selector.name if selector.kind == "chain" else selector.attr
        for top in _chains(parsed.tree, subject):
            if wanted(top.lineno):
                found.append(AstContainer("chain", top.lineno, _chain_entries(top)))
    return found


def top_level_names(tree: ast.Module) -> set[str] | None:
    """Names a module defines at top level (None if it star-imports: anything may be there)."""
    names: set[str] = set()

    def collect(body: list[ast.stmt]) -> bool:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(stmt.name)
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
                if isinstance(stmt.target, ast.Name):
                    names.add(stmt.target.id)
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for alias in stmt.names:
                    if alias.name == "*":
                        return False
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(stmt, (ast.If, ast.Try, ast.With)):
                blocks = [stmt.body, getattr(stmt, "orelse", []), getattr(stmt, "finalbody", [])]
                blocks += [h.body for h in getattr(stmt, "handlers", [])]
                if not all(collect(block) for block in blocks):
                    return False
        return True

    return names if collect(tree.body) else None
