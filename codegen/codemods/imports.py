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


def ensure_imports(source: str, statements: Sequence[str], path: str) -> tuple[str, list[str]]:
    """`source` with each `from M import N` of `statements` present; (new source, reports)."""
    module = parse(source, path)
    reports = []
    for text in statements:
        match = _FROM.match(text.strip())
        if not match:
            raise CodegenError(f"import {text!r} is not of the form 'from MODULE import NAME'")
        mod, name, asname = match.groups()
        if (asname or name) in bound_names(module):
            continue
        module = _add(module, mod, name, asname)
        reports.append(f"imported {asname or name} (from {mod} import {name})")
    return module.code, reports


def _add(module: cst.Module, mod: str, name: str, asname: str | None) -> cst.Module:
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
            template = imp.names[min(at, len(names) - 1)]
            new_imp = sequence.insert(
                imp, at, alias.with_changes(comma=template.comma), template=template
            )
            body[index] = statement.with_changes(body=[new_imp])
            return module.with_changes(body=body)
    line = cst.parse_statement(f"from {mod} import {name}" + (f" as {asname}" if asname else ""))
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
