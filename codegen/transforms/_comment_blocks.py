"""Editing whole comment blocks: the runs of comment lines libcst keeps before a node.

libcst holds a comment line that stands alone (not trailing code) as an `EmptyLine` in one
of a node's line lists (`leading_lines` of a statement, `header`/`footer` of a module...).
Prose transforms judge such a block as one piece of prose: it is kept, edited or dropped
whole. `CommentBlockEditor` finds the blocks; a subclass says what becomes of each.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

# the node fields that hold whole comment lines (EmptyLine sequences)
LINE_LISTS = ("leading_lines", "empty_lines", "header", "footer", "lines_after_decorators")


class CommentBlockEditor(cst.CSTTransformer):
    """Base transformer: each run of comment lines in a node's line lists becomes what
    `comment_block(block)` returns (the lines to keep in its place; [] drops it). Blank
    lines between blocks stay where they are."""

    def comment_block(self, block: list[cst.EmptyLine]) -> list[cst.EmptyLine]:
        raise NotImplementedError

    def on_leave(self, original, updated):
        updated = super().on_leave(original, updated)
        if not isinstance(updated, cst.CSTNode):
            return updated
        changes = {}
        for attribute in LINE_LISTS:
            lines = getattr(updated, attribute, None)
            if isinstance(lines, Sequence) and lines and isinstance(lines[0], cst.EmptyLine):
                kept = self._edit_blocks(lines)
                if kept != list(lines):
                    changes[attribute] = kept
        return updated.with_changes(**changes) if changes else updated

    def _edit_blocks(self, lines: Sequence[cst.EmptyLine]) -> list[cst.EmptyLine]:
        kept, block = [], []
        for line in [*lines, None]:
            if line is not None and line.comment is not None:
                block.append(line)
                continue
            if block:
                kept += self.comment_block(block)
            block = []
            if line is not None:
                kept.append(line)
        return kept
