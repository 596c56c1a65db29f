"""Make sure the names a new entry uses are imported: `from pkg.m import Name` where isort
would put it.

Why: an entry whose value is a class (`"Arch": ArchForCausalLM`) or a dispatch branch
copied from its neighbour (`model = Qwen3Model(config)`) is only complete when the class is
imported. The new import joins an existing `from pkg.m import (...)` of the same module
(sorted among its names when they are sorted), or becomes its own line among the other
top-level `from` imports of the same package, in module order, so `ruff check` (isort
rules included) stays clean. Names already bound at module level are left alone. Written
with the same splicing as the registry codemods rather than libcst's `AddImportsVisitor`,
which appends after the last import and would break isort's order.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence

import libcst as cst

from codegen.codemods import sequence
from codegen.codemods.files import parse
from codegen.codemods.import_sites import module_name
from codegen.errors import CodegenError

_MODULE = cst.Module([])
_NO_COMMA = cst.MaybeSentinel.DEFAULT
_FROM = re.compile(r"^from\s+([\w.]+)\s+import\s+(\w+)(?:\s+as\s+(\w+))?$")


def top_level_imports(module: cst.Module) -> dict[str, tuple[str, str]]:
    """Bound name -> (module, imported name) for every top-level `from M import N [as A]`."""
    found = {}
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                for alias in small.names:
                    name = _alias_name(alias)
                    bound = alias.asname.name.value if alias.asname else name  # type: ignore[union-attr]
                    found[bound] = (module_name(small), name)
    return found


def bound_names(module: cst.Module) -> set[str]:
    """Names bound at module level: imports, defs, classes, assignments (one level of if/try)."""
    names: set[str] = set()

    def visit(body: Iterable[cst.CSTNode]) -> None:
        for statement in body:
            if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
                names.add(statement.name.value)
            elif isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    if isinstance(small, (cst.Import, cst.ImportFrom)):
                        if isinstance(small.names, cst.ImportStar):
                            names.add("*")
                            continue
                        for alias in small.names:
                            if alias.asname is not None:
                                names.add(alias.asname.name.value)  # type: ignore[union-attr]
                            else:
                                names.add(_alias_name(alias).split(".")[0])
                    elif isinstance(small, (cst.Assign, cst.AnnAssign)):
                        targets = small.targets if isinstance(small, cst.Assign) else [small]
                        for target in targets:
                            if isinstance(target.target, cst.Name):
                                names.add(target.target.value)
            elif isinstance(statement, (cst.If, cst.Try)):
                visit(statement.body.body)  # type: ignore[union-attr]

    visit(module.body)
    return names


def _alias_name(alias: cst.ImportAlias) -> str:
    return cst.Module([]).code_for_node(alias.name)


def _type_rank(name: str) -> tuple[int, str]:
    """isort's order-by-type: CONSTANTS, then Classes, then the rest."""
    if name.isupper() and len(name) > 1:
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def ensure_imports(
    source: str, statements: Sequence[str], path: str, line_length: int = 88
) -> tuple[str, list[str]]:
    """`source` with each `from M import N` of `statements` present; (new source, reports).

    An import line longer than `line_length` is written parenthesised, one name per line,
    as ruff would format it."""
    module = parse(source, path)
    reports = []
    for text in statements:
        match = _FROM.match(text.strip())
        if not match:
            raise CodegenError(f"import {text!r} is not of the form 'from MODULE import NAME'")
        mod, name, asname = match.groups()
        if (asname or name) in bound_names(module):
            continue
        module = _add(module, mod, name, asname, line_length)
        reports.append(f"imported {asname or name} (from {mod} import {name})")
    return module.code, reports


def _statement(mod: str, names: list[str], width: int) -> cst.SimpleStatementLine:
    flat = f"from {mod} import {', '.join(names)}"
    if len(flat) <= width:
        return cst.parse_statement(flat)  # type: ignore[return-value]
    body = "".join(f"    {n},\n" for n in names)
    return cst.parse_statement(f"from {mod} import (\n{body})")  # type: ignore[return-value]


def _add(
    module: cst.Module, mod: str, name: str, asname: str | None, width: int = 88
) -> cst.Module:
    body = list(module.body)
    froms = []
    for index, statement in enumerate(body):
        if isinstance(statement, cst.SimpleStatementLine) and isinstance(
            statement.body[0], cst.ImportFrom
        ):
            froms.append((index, statement, statement.body[0]))
    alias = cst.ImportAlias(
        name=cst.Name(name), asname=cst.AsName(cst.Name(asname)) if asname else None
    )
    for index, statement, imp in froms:
        if module_name(imp) == mod and not isinstance(imp.names, cst.ImportStar):
            names = [_alias_name(a) for a in imp.names]
            ranks = [_type_rank(n) for n in names]
            at = len(names)
            if ranks == sorted(ranks):
                at = bisect.bisect_right(ranks, _type_rank(name))
            if imp.lpar is None:  # one line: rewrite it, wrapped if it no longer fits
                spelled = [
                    _MODULE.code_for_node(a.with_changes(comma=_NO_COMMA)) for a in imp.names
                ]
                spelled.insert(at, name + (f" as {asname}" if asname else ""))
                new_line = _statement(mod, spelled, width)
                body[index] = new_line.with_changes(
                    leading_lines=statement.leading_lines,
                    trailing_whitespace=statement.trailing_whitespace,
                )
                return module.with_changes(body=body)
            template = imp.names[min(at, len(names) - 1)]
            new_alias = alias.with_changes(comma=template.comma)
            new_imp = sequence.insert(imp, at, new_alias, template=template)
            body[index] = statement.with_changes(body=[new_imp])
            return module.with_changes(body=body)
    line = _statement(mod, [name + (f" as {asname}" if asname else "")], width)
    package = mod.split(".")[0]
    same = [
        (i, module_name(imp)) for i, _, imp in froms if module_name(imp).split(".")[0] == package
    ]
    if same:
        earlier = [i for i, m in same if m.casefold() <= mod.casefold()]
        if earlier:
            at = earlier[-1] + 1
        else:
            at = same[0][0]
            first = body[at]
            line = line.with_changes(leading_lines=first.leading_lines)  # type: ignore[union-attr]
            body[at] = first.with_changes(leading_lines=[])
    else:
        imports = [
            i
            for i, s in enumerate(body)
            if isinstance(s, cst.SimpleStatementLine)
            and isinstance(s.body[0], (cst.Import, cst.ImportFrom))
        ]
        at = imports[-1] + 1 if imports else 0
    body.insert(at, line)
    return module.with_changes(body=body)
