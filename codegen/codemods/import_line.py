"""Insert a side-effect import line: `from pkg.models.m import spec as m_spec  # noqa: F401`.

Registries that work by import side effects keep one line per model in a package
`__init__.py`. The lines of the registry are the `from PKG.<model>... import ...` statements
carrying a `# noqa` pragma (ordinary imports of the same package are not entries). The new
line copies its nearest neighbour with the model's name swapped in the module path and the
aliases; a comment above the next line stays above it. The line is written by hand rather
than scheduled with libcst's `AddImportsVisitor`, because its position (sorted, or after
its family) is the point, and `AddImportsVisitor` would merge or hoist it.

    before:  from pkg.models.llama import spec as llama_spec  # noqa: F401
             from pkg.models.qwen3 import spec as qwen3_spec  # noqa: F401
    after `add 'from pkg.models' qwen2`:
             from pkg.models.llama import spec as llama_spec  # noqa: F401
             from pkg.models.qwen2 import spec as qwen2_spec  # noqa: F401
             from pkg.models.qwen3 import spec as qwen3_spec  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.codemods.base import Entry, Outcome, plan, present, replace
from codegen.codemods.files import first_changed_line
from codegen.codemods.import_sites import module_name, submodule_key
from codegen.codemods.locate import Site
from codegen.codemods.rename import swap
from codegen.codemods.shape import is_pragma
from codegen.errors import CodegenError


class ImportLine:
    kind = "import_lines"

    def entries(self, wrapper: MetadataWrapper, site: Site) -> list[Entry]:
        """One entry per side-effect import line, keyed by the sub-module it imports."""
        package, owner = site.extra["package"], site.node
        positions = wrapper.resolve(PositionProvider)
        found = []
        for index in site.extra["indices"]:
            stmt = owner.body[index]
            found.append(
                Entry(
                    key=submodule_key(module_name(stmt.body[0]), package) or "",
                    index=index,
                    line=positions[stmt].start.line,
                    values=(),
                    node=stmt,
                    comments=tuple(e.comment.value for e in stmt.leading_lines if e.comment),
                )
            )
        return found

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
        if expression:
            raise CodegenError("import registries take no VALUE", path=path)
        if not key.isidentifier():
            raise CodegenError(f"{key!r} is not a module name", path=path, line=site.line)
        package, owner = site.extra["package"], site.node
        entries = self.entries(wrapper, site)
        decided = plan(
            entries, key, (), label=site.label, path=path, line=site.line, section=section
        )
        source = wrapper.module.code
        if isinstance(decided, Entry):
            return present(decided, source, site.label)
        template = decided.template
        new = _copy(template.node, package, template.key, key)
        body = list(owner.body)
        if decided.position == 0:  # header comments above the block stay on top
            first = entries[0]
            new = new.with_changes(leading_lines=first.node.leading_lines)
            body[first.index] = first.node.with_changes(leading_lines=[])
            body.insert(first.index, new)
        else:
            body.insert(entries[decided.position - 1].index + 1, new)
        new_source = replace(wrapper, owner, owner.with_changes(body=body)).code
        line = first_changed_line(source, new_source)
        return Outcome("added", new_source, line, decided.reason, site.label, key)


def _copy(
    stmt: cst.SimpleStatementLine, package: str, old: str, new: str
) -> cst.SimpleStatementLine:
    """The neighbour's line for model `new`; prose comments are not copied."""
    imp = stmt.body[0]
    parts = module_name(imp).lstrip(".").split(".")
    depth = len([p for p in package.lstrip(".").split(".") if p])
    parts[depth] = new
    module = cst.parse_expression(".".join(parts))
    names = imp.names
    if not isinstance(names, cst.ImportStar):
        names = [_rename_alias(alias, old, new) for alias in names]
    trailing = stmt.trailing_whitespace
    if not is_pragma(trailing.comment):
        trailing = cst.TrailingWhitespace()
    return stmt.with_changes(
        body=[imp.with_changes(module=module, names=names)],
        leading_lines=[],
        trailing_whitespace=trailing,
    )


def _rename_alias(alias: cst.ImportAlias, old: str, new: str) -> cst.ImportAlias:
    name = alias.name
    if isinstance(name, cst.Name):
        name = name.with_changes(value=swap(name.value, old, new))
    asname = alias.asname
    if asname is not None and isinstance(asname.name, cst.Name):
        asname = asname.with_changes(name=cst.Name(swap(asname.name.value, old, new)))
    return alias.with_changes(name=name, asname=asname)
