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

from codegen.codemods import sequence, shape
from codegen.codemods.base import Entry, Outcome, Plan, plan, present, replace
from codegen.codemods.files import first_changed_line
from codegen.codemods.locate import Site


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
            found.append(
                Entry(
                    key=key,
                    index=index,
                    line=positions[element].start.line,
                    values=values,
                    node=element,
                    comments=tuple(sequence.comments_above(node, index)),
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
    ) -> Outcome:
        entries = self.entries(wrapper, site)
        decided = plan(
            entries, key, values, label=site.label, path=path, line=site.line, section=section
        )
        source = wrapper.module.code
        if isinstance(decided, Entry):
            return present(decided, source, site.label)
        new_node = self._splice(site.node, entries, decided, key)
        module = replace(wrapper, site.node, new_node)
        new_source = module.code
        line = first_changed_line(source, new_source)
        return Outcome("added", new_source, line, decided.reason, site.label)

    def _splice(self, node: cst.CSTNode, entries: list[Entry], decided: Plan, key: str):
        if decided.template is None:
            element = self.default(key, decided.values)
            return sequence.insert(node, len(sequence.elements(node)), element, template=element)
        template = decided.template
        element = self.build(template.node, key, decided.values)
        if decided.position < len(entries):
            index = entries[decided.position].index
        else:
            index = entries[-1].index + 1
        comment = sequence.trailing_comment(node, template.index)
        return sequence.insert(
            node,
            index,
            element,
            template=template.node,
            comment=comment if shape.is_pragma(comment) else None,
        )
