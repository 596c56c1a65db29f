"""CommentBlockEditor: each run of comment lines is judged whole, wherever libcst keeps it."""

from __future__ import annotations

import libcst as cst

from codegen.transforms._comment_blocks import CommentBlockEditor


class _DropNamingX(CommentBlockEditor):
    """Drops a block in which a line says "x"; upper-cases the others."""

    def comment_block(self, block):
        if any("x" in line.comment.value for line in block):
            return []
        return [
            line.with_changes(comment=cst.Comment(line.comment.value.upper())) for line in block
        ]


BEFORE = """\
# header about x
# still the header

import torch


# a block
# that says x

# kept, above the class
class A:
    # kept, in the class
    def f(self):
        # about x
        return 1  # a trailing comment about x stays: it is no block

    # footer-like, about x
"""

AFTER = (
    "\n"  # the header's blank line
    "import torch\n"
    "\n\n\n"  # the blank lines around the dropped block
    "# KEPT, ABOVE THE CLASS\n"
    "class A:\n"
    "    # KEPT, IN THE CLASS\n"
    "    def f(self):\n"
    "        return 1  # a trailing comment about x stays: it is no block\n"
    "\n"
)


def test_blocks_go_or_are_edited_whole_and_blank_lines_stay():
    assert cst.parse_module(BEFORE).visit(_DropNamingX()).code == AFTER


def test_a_module_without_comment_lines_is_unchanged():
    module = cst.parse_module("import torch\n\n\nx = 1  # about x\n")
    assert module.visit(_DropNamingX()).code == module.code
