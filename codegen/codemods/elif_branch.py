"""Insert a branch into an `if NAME == "...": ... elif ...: ... else: raise` dispatch chain.

Some trainers pick the model class with a chain of comparisons on `model_type` that ends in
`else: raise ValueError(...)`. The new `elif` goes where the keys say (sorted, after its
family, or last, which is just before the final `else`). Its body is the VALUEs, one
statement each, indented like the neighbours; with no VALUE, the nearest branch's body is
copied with the model name swapped (`qwen2` -> `llama`, `Qwen2` -> `Llama`). The first
branch is never displaced, so the `if` line itself is never rewritten; a key that sorts
before it goes right after it.

    before:  if model_type == "llama":
                 return build_llama(config)
             else:
                 raise ValueError(model_type)
    after `add 'if model_type' qwen3 'return build_qwen3(config)'`:
             if model_type == "llama":
                 return build_llama(config)
             elif model_type == "qwen3":
                 return build_qwen3(config)
             else:
                 raise ValueError(model_type)
"""

from __future__ import annotations

import builtins
import textwrap
from collections.abc import Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.codemods import order, shape
from codegen.codemods.base import Entry, Outcome, replace
from codegen.codemods.files import first_changed_line
from codegen.codemods.imports import bound_names, ensure_imports, top_level_imports
from codegen.codemods.locate import Site, chain_name
from codegen.codemods.rename import Renamer, swap
from codegen.errors import CodegenError


def branches(top: cst.If) -> tuple[list[cst.If], cst.Else | None]:
    """The `if`/`elif` nodes of a chain, in order, and its final `else` (or None)."""
    found, node = [top], top
    while isinstance(node.orelse, cst.If):
        node = node.orelse
        found.append(node)
    return found, node.orelse


def branch_keys(branch: cst.If) -> list[str]:
    """The strings a branch tests for: one for `==`, several for `in (...)`, none for other
    tests (`elif fallback_enabled:` is part of the chain but registers nothing)."""
    if chain_name(branch.test) is None:
        return []
    comparator = branch.test.comparisons[0].comparator  # type: ignore[attr-defined]
    items = comparator.elements if isinstance(comparator, (cst.Tuple, cst.List, cst.Set)) else []
    leaves = [comparator] if not items else [e.value for e in items]
    return [t for t in (shape.text(leaf) for leaf in leaves) if t is not None]


def _equality(branch: cst.If) -> bool:
    test = branch.test
    return chain_name(test) is not None and isinstance(test.comparisons[0].operator, cst.Equal)


def _body_lines(branch: cst.If) -> tuple[str, ...]:
    module = cst.Module([])
    body = branch.body.body if isinstance(branch.body, cst.IndentedBlock) else []
    return tuple(module.code_for_node(s.with_changes(leading_lines=[])).strip() for s in body)


def _statements(values: Sequence[str]) -> list[cst.BaseStatement]:
    statements: list[cst.BaseStatement] = []
    for value in values:
        try:
            statements += cst.parse_module(textwrap.dedent(value).strip() + "\n").body
        except cst.ParserSyntaxError as err:
            raise CodegenError(f"branch body {value!r} is not Python: {err.message}") from None
    return statements


class ElifBranch:
    kind = "chain"

    def entries(self, wrapper: MetadataWrapper, site: Site) -> list[Entry]:
        """One entry per tested key (an `in (...)` branch has several); bodies not compared."""
        positions = wrapper.resolve(PositionProvider)
        chain, _ = branches(site.node)  # type: ignore[arg-type]
        return [
            Entry(key, index, positions[branch].start.line, None, branch)
            for index, branch in enumerate(chain)
            for key in branch_keys(branch)
        ]

    def add(
        self,
        wrapper: MetadataWrapper,
        site: Site,
        key: str,
        values: Sequence[str],
        *,
        path: str,
        section: str | None = None,
        expression: bool = False,
        line_length: int = 88,
    ) -> Outcome:
        if section is not None:
            raise CodegenError("--section applies to bracketed containers only", path=path)
        if expression:
            raise CodegenError("a branch takes statements as VALUEs", path=path)
        top: cst.If = site.node  # type: ignore[assignment]
        chain, final = branches(top)
        positions = wrapper.resolve(PositionProvider)
        source = wrapper.module.code
        wanted_body = tuple(cst.Module([]).code_for_node(s).strip() for s in _statements(values))
        for branch in chain:
            if key in branch_keys(branch):
                line = positions[branch].start.line
                if not values or _body_lines(branch) == wanted_body:
                    return Outcome("present", source, line, "already present", site.label, key)
                raise CodegenError(
                    f"duplicate key {key!r}: the branch here already handles it with a "
                    "different body; edit it by hand",
                    path=path,
                    line=line,
                )
        keyed = [(i, b) for i, b in enumerate(chain) if _equality(b) and branch_keys(b)]
        if not keyed:
            raise CodegenError(
                f'{site.label} has no `{chain_name(top.test)} == "..."` branch to copy',
                path=path,
                line=site.line,
            )
        keys = [branch_keys(b)[0] for _, b in keyed]
        position, reason = order.choose_position(keys, key)
        at = keyed[position][0] if position < len(keyed) else keyed[-1][0] + 1
        if at == 0:
            at, reason = 1, "right after the first branch (the `if` line is never rewritten)"
        anchor = keyed[max(position - 1, 0)][1]
        new = self._build(anchor, branch_keys(anchor)[0], key, values)
        chain.insert(at, new)
        tail: cst.If | cst.Else | None = final
        for branch in reversed(chain):
            tail = branch.with_changes(orelse=tail)
        new_source = replace(wrapper, top, tail).code
        old_key = branch_keys(anchor)[0]
        imports, notes = _missing_imports(wrapper.module, anchor, new, old_key, key, values, path)
        if imports:
            new_source, reports = ensure_imports(new_source, imports, path, line_length)
            notes = reports + notes
        line = first_changed_line(source, new_source)
        return Outcome("added", new_source, line, reason, site.label, key, notes)

    def _build(self, template: cst.If, old: str, key: str, values: Sequence[str]) -> cst.If:
        comparison = template.test.comparisons[0]  # type: ignore[attr-defined]
        test = template.test.with_changes(
            comparisons=[
                comparison.with_changes(comparator=shape.replace_leaf(comparison.comparator, key))
            ]
        )
        if values:
            body = template.body.with_changes(body=_statements(values))
        else:
            body = template.body.visit(Renamer(old, key))
        return template.with_changes(test=test, body=body, leading_lines=[])


class _Names(cst.CSTVisitor):
    """Names a block loads, and names it binds (assignments, imports, loop targets)."""

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        self.bound: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.loaded.add(node.value)

    def visit_ImportAlias(self, node: cst.ImportAlias) -> bool:
        if node.asname is not None and isinstance(node.asname.name, cst.Name):
            self.bound.add(node.asname.name.value)
        else:
            self.bound.add(cst.Module([]).code_for_node(node.name).split(".")[0])
        return False  # the imported path is not a name this scope loads

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                alias.visit(self)
        return False

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        if isinstance(node.target, cst.Name):
            self.bound.add(node.target.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)  # `x.attr`: `attr` is not a name of this scope
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        node.value.visit(self)  # `f(key=v)`: `key` is not a name of this scope
        return False


def _names(branch: cst.If) -> _Names:
    found = _Names()
    branch.body.visit(found)
    return found


def _missing_imports(
    module: cst.Module,
    template: cst.If,
    new: cst.If,
    old_key: str,
    key: str,
    values: Sequence[str],
    path: str,
) -> tuple[list[str], list[str]]:
    """The imports the new branch needs (a renamed copy of the template's import of the
    class it swapped), and notes for names nobody can import automatically."""
    new_names, old_names = _names(new), _names(template)
    known = bound_names(module) | set(dir(builtins)) | new_names.bound | old_names.loaded
    if "*" in known:
        return [], []
    imported = top_level_imports(module)
    imports, notes = [], []
    for name in sorted(new_names.loaded - known):
        old = swap(name, key, old_key)
        if not values and old != name and old in imported:
            source_module, source_name = imported[old]
            if source_name == old:
                imports.append(f"from {swap(source_module, old_key, key)} import {name}")
                continue
        notes.append(f"{name} is used by the new branch but not imported in {path}: add its import")
    return imports, notes
