"""Locate a side-effect import registry: `from PKG.<model> import spec  # noqa: F401` lines,
or one `from PKG import (a,  # noqa: F401 ...)` list.

Why a separate locator: an import registry is not bound to a name. It is recognised by its
`# noqa` pragma (a side-effect import must carry one to survive the linter), which tells it
apart from ordinary imports of the same package (`from PKG.base import Base`).
"""

from __future__ import annotations

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.codemods.locate import Site, dotted
from codegen.codemods.selector import Selector
from codegen.codemods.shape import is_pragma
from codegen.errors import CodegenError


def module_name(node: cst.ImportFrom) -> str:
    """`from ..a.b import x` -> `..a.b`."""
    base = dotted(node.module) if node.module is not None else ""
    return "." * len(node.relative) + (base or "")


def submodule_key(module: str, package: str) -> str | None:
    """The first component under `package`: (`pkg.models.llama.spec`, `pkg.models`) -> `llama`."""
    prefix = package if package.endswith(".") else package + "."
    if not module.startswith(prefix) or len(module) == len(prefix):
        return None
    return module[len(prefix) :].split(".", 1)[0]


def statement_pragma(stmt: cst.SimpleStatementLine) -> bool:
    return is_pragma(stmt.trailing_whitespace.comment)


def names_pragma(node: cst.ImportFrom) -> bool:
    if isinstance(node.names, cst.ImportStar):
        return False
    gaps = [a.comma.whitespace_after for a in node.names if isinstance(a.comma, cst.Comma)]
    if node.rpar is not None:
        gaps.append(node.rpar.whitespace_before)
    return any(
        isinstance(g, cst.ParenthesizedWhitespace) and is_pragma(g.first_line.comment) for g in gaps
    )


class _Collector(cst.CSTVisitor):
    """Side-effect import statements of one package, with the body that holds each."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.owners: list[cst.CSTNode] = []
        self.lines: list[tuple[cst.CSTNode, int, cst.SimpleStatementLine]] = []
        self.lists: list[tuple[cst.SimpleStatementLine, cst.ImportFrom]] = []

    def visit_Module(self, node: cst.Module) -> None:
        self.owners.append(node)

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self.owners.append(node)

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock) -> None:
        self.owners.pop()

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        if len(node.body) != 1 or not isinstance(node.body[0], cst.ImportFrom):
            return
        imp = node.body[0]
        if isinstance(imp.names, cst.ImportStar):
            return
        name = module_name(imp)
        if name == self.package and (statement_pragma(node) or names_pragma(imp)):
            self.lists.append((node, imp))
        elif submodule_key(name, self.package) and statement_pragma(node):
            owner = self.owners[-1]
            index = next(i for i, s in enumerate(owner.body) if s is node)
            self.lines.append((owner, index, node))


def locate_imports(wrapper: MetadataWrapper, selector: Selector, path: str) -> Site:
    """The import registry of `from PKG`; errors when there is none or more than one."""
    collector = _Collector(selector.name)
    wrapper.visit(collector)
    positions = wrapper.resolve(PositionProvider)
    sites: list[Site] = []
    for stmt, imp in collector.lists:
        line = positions[stmt].start.line
        sites.append(Site("import_names", imp, line, f"'from {selector.name} import (...)'"))
    owners: dict[int, list] = {}
    for owner, index, stmt in collector.lines:
        owners.setdefault(id(owner), []).append((owner, index, stmt))
    for group in owners.values():
        owner = group[0][0]
        line = positions[group[0][2]].start.line
        site = Site("import_lines", owner, line, f"'from {selector.name}.* import' lines")
        site.extra["indices"] = [index for _, index, _ in group]
        site.extra["package"] = selector.name
        sites.append(site)
    if selector.line is not None:
        sites = [s for s in sites if s.line == selector.line]
    if not sites:
        raise CodegenError(
            f"container '{selector}' not found (side-effect imports carry '# noqa: F401')",
            path=path,
        )
    if len(sites) > 1:
        lines = ", ".join(str(s.line) for s in sites)
        raise CodegenError(
            f"ambiguous container '{selector}': import registries at lines {lines}; "
            f"pick one with '{selector}@LINE'",
            path=path,
            line=sites[0].line,
        )
    return sites[0]
