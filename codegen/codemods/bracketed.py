"""The driver shared by codemods whose container is a bracketed, comma-separated sequence.

Why: a dict, an `OrderedDict([...])` pair list, a set of members, a `Literal[...]` and a
parenthesised import list differ only in how an element is read and built; finding the
position, copying the neighbour's shape and splicing the element in (`sequence.insert`) are
the same. A subclass implements `read()` and `build()` and documents its shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.codemods import layout, sequence, shape
from codegen.codemods.base import Entry, Outcome, Plan, normalized, plan, present, replace
from codegen.codemods.files import first_changed_line
from codegen.codemods.locate import Site
from codegen.errors import CodegenError

_MODULE = cst.Module([])


class BracketedCodemod:
    """Insert one entry into a bracketed sequence; subclasses say how entries look."""

    kind = ""

    def read(self, element: cst.CSTNode) -> tuple[str, tuple[str, ...] | None] | None:
        """(key, values) of one element, or None for elements that are not entries."""
        raise NotImplementedError

    def build(self, template: cst.CSTNode, key: str, values: Sequence[str]) -> cst.CSTNode:
        """A new element shaped like `template`."""
        raise NotImplementedError

    def default(self, key: str, values: Sequence[str]) -> cst.CSTNode:
        """The element for an empty container, which has no neighbour to copy."""
        raise NotImplementedError

    def value_node(self, element: cst.CSTNode) -> cst.CSTNode | None:
        """The part of an element an expression VALUE replaces (None: not supported)."""
        return None

    def build_expression(self, template: cst.CSTNode, key: str, value: str) -> cst.CSTNode:
        """A new element shaped like `template` whose whole value is the expression `value`."""
        raise CodegenError(f"{self.kind} containers take plain values, not expressions")

    def entries(self, wrapper: MetadataWrapper, site: Site) -> list[Entry]:
        """The container's entries, in order, with their lines."""
        node = site.node
        positions = wrapper.resolve(PositionProvider)
        found = []
        for index, element in enumerate(sequence.elements(node)):
            read = self.read(element)
            if read is None:
                continue
            key, values = read
            value = self.value_node(element)
            found.append(
                Entry(
                    key=key,
                    index=index,
                    line=positions[element].start.line,
                    values=values,
                    node=element,
                    comments=tuple(sequence.comments_above(node, index)),
                    source=normalized(_MODULE.code_for_node(value)) if value else "",
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
        entries = self.entries(wrapper, site)
        decided = plan(
            entries,
            key,
            values,
            label=site.label,
            path=path,
            line=site.line,
            section=section,
            expression=expression,
        )
        source = wrapper.module.code
        if isinstance(decided, Entry):
            return present(decided, source, site.label)
        indent = None
        if decided.template is not None:
            indent = _own_line_indent(wrapper, decided.template.node, source)
        new_node = self._splice(site.node, entries, decided, key, indent, line_length)
        module = replace(wrapper, site.node, new_node)
        new_source = module.code
        line = first_changed_line(source, new_source)
        return Outcome("added", new_source, line, decided.reason, site.label, key)

    def _splice(
        self,
        node: cst.CSTNode,
        entries: list[Entry],
        decided: Plan,
        key: str,
        indent: str | None = None,
        line_length: int = 88,
    ):
        if decided.template is None:
            if decided.expression:
                raise CodegenError("an empty container has no entry to copy the shape from")
            element = self.default(key, decided.values)
            return sequence.insert(node, len(sequence.elements(node)), element, template=element)
        template = decided.template
        if decided.expression:
            element = self.build_expression(template.node, key, decided.values[0])
        else:
            element = self.build(template.node, key, decided.values)
        if indent is not None:
            element = layout.fit(element, indent, line_length)
        if decided.position < len(entries):
            index = entries[decided.position].index
        else:
            index = entries[-1].index + 1
        comment = sequence.trailing_comment(node, template.index)
        if not shape.is_pragma(comment) or (indent is not None and _long_line_only(comment)):
            comment = None  # prose stays with its entry; a laid-out entry needs no E501 waiver
        return sequence.insert(node, index, element, template=template.node, comment=comment)


def _long_line_only(comment: cst.Comment | None) -> bool:
    """`# noqa: E501`: a waiver for the neighbour's line length, not part of an entry's shape."""
    if comment is None:
        return False
    body = comment.value.lstrip("#").strip().lower().replace(" ", "")
    return body == "noqa:e501"


def _own_line_indent(wrapper: MetadataWrapper, node: cst.CSTNode, source: str) -> str | None:
    """The indentation of `node` when it stands on lines of its own (one entry per line),
    else None (entries several to a line keep the neighbour's layout)."""
    span = wrapper.resolve(PositionProvider)[node]
    lines = source.splitlines()
    before = lines[span.start.line - 1][: span.start.column]
    after = lines[span.end.line - 1][span.end.column :].strip()
    rest = after[1:].strip() if after.startswith(",") else after
    if before.strip() or (rest and not rest.startswith("#")):
        return None
    return before
