"""Prose that spoke of parts a transform removed goes with them.

A reference's docstrings and comments describe its modules: deepseek_v3's shard plan speaks
of routed experts and the router's correction bias, its key table of the experts on disk.
A transform that removes such a part (every layer dense, a router without correction bias)
leaves that prose false for the target. `drop_prose` edits one file's prose by a pattern of
the words naming the removed part:

- a parenthesis (or one comma-separated item of it) naming them goes: "(with its
  correction bias)", the "`ep`" of "(`tp`, `dp_shard`, `ep`)";
- what still names them goes whole: a module docstring's paragraph (never its summary
  line), a block of comment lines, a trailing comment.

Class and function docstrings only lose parentheses and items.
"""

from __future__ import annotations

import re
import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.transforms._comment_blocks import CommentBlockEditor
from codegen.transforms.edits import run

_PARENTHESIS = re.compile(r" ?\(([^()]*)\)")
_DOCSTRING = m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])
_WIDTH = 96  # a module docstring's paragraph line in a 100-column file


def drop_prose(package, filename: str, words: str) -> None:
    """Edit `filename`'s prose naming `words` (a regex) as the module docstring says."""
    if filename in package.files:
        run(package, filename, _DropProse(re.compile(words)), required=False)


def without_parentheses(text: str, words: re.Pattern) -> str:
    """`text` without the parentheses, or the items of one (separated by ", " or "; "),
    naming `words`."""

    def edit(found: re.Match) -> str:
        parts = re.split(r"(, |; )", found[1])
        items, separators = parts[0::2], ["", *parts[1::2]]
        kept = ""
        for item, separator in zip(items, separators, strict=True):
            if not words.search(item):
                kept += (separator if kept else "") + item
        if kept == found[1]:
            return found[0]
        return f"{found[0][: found[0].index('(')]}({kept})" if kept else ""

    return _PARENTHESIS.sub(edit, text)


def _refilled(paragraph: str) -> str:
    """An edited paragraph's lines filled again (a removed parenthesis may have spanned two);
    a bullet list is left as it is."""
    if paragraph.lstrip().startswith("- "):
        return paragraph
    return textwrap.fill(" ".join(paragraph.split()), _WIDTH, break_on_hyphens=False)


class _DropProse(CommentBlockEditor):
    def __init__(self, words: re.Pattern):
        super().__init__()
        self.words = words
        self.hits = 1  # a file without such prose is fine

    def _edit(self, text: str) -> str | None:
        """`text` without its parentheses naming the words; None when it still names them."""
        text = without_parentheses(text, self.words)
        return None if self.words.search(text) else text

    def leave_Module(self, original, updated):
        if not (updated.body and m.matches(updated.body[0], _DOCSTRING)):
            return updated
        string = updated.body[0].body[0].value
        quote = string.value[:3] if string.value[:3] in ('"""', "'''") else string.value[0]
        paragraphs = string.value[len(quote) : -len(quote)].strip("\n").split("\n\n")
        edited = [without_parentheses(paragraphs[0], self.words)]
        edited += [p for p in map(self._edit, paragraphs[1:]) if p is not None]
        kept = [p if p in paragraphs else _refilled(p) for p in edited]
        text = "\n\n".join(kept)
        value = f"{quote}{text}{chr(10) if chr(10) in text else ''}{quote}"
        return updated.with_deep_changes(string, value=value)

    def leave_FunctionDef(self, original, updated):
        return self._inner_docstring(updated)

    def leave_ClassDef(self, original, updated):
        return self._inner_docstring(updated)

    def _inner_docstring(self, node):
        body = getattr(node.body, "body", ())
        if not (body and m.matches(body[0], _DOCSTRING)):
            return node
        string = body[0].body[0].value
        value = without_parentheses(string.value, self.words)
        return node if value == string.value else node.with_deep_changes(string, value=value)

    def leave_TrailingWhitespace(self, original, updated):
        if updated.comment is None:
            return updated
        text = self._edit(updated.comment.value)
        if text is None:
            return updated.with_changes(comment=None, whitespace=cst.SimpleWhitespace(""))
        return updated.with_changes(comment=cst.Comment(text))

    def _comment(self, comment: cst.Comment) -> cst.Comment:
        return cst.Comment(without_parentheses(comment.value, self.words))

    def comment_block(self, block: list[cst.EmptyLine]) -> list[cst.EmptyLine]:
        """The block without its parentheses naming the words; [] when it still names them."""
        edited = [
            line.with_changes(
                comment=cst.Comment(without_parentheses(line.comment.value, self.words))
            )
            for line in block
        ]
        return [] if any(self.words.search(line.comment.value) for line in edited) else edited
