"""Insert one element into a comma-separated libcst sequence without touching its neighbours.

Why: dicts, lists, sets, tuples, `Literal[...]` subscripts and parenthesised import lists all
keep their layout in the same three places: the whitespace after the opening bracket, after
each comma, and before the closing bracket. Splitting exactly those (a neighbour's trailing
comment stays on its line; comment lines above the next entry stay above it) is what keeps
every other byte of the file, so it is written once here.

Rules, for a new element at index `p` of `n`:
- between two elements: the gap after element `p-1` is split; element `p-1` keeps its
  trailing comment, the new element gets a plain line (or the inline separator), and the
  blank/comment lines that were above element `p` stay above it;
- at the front: header comments under the opening bracket stay on top;
- at the end: the trailing-comma style of the old last element is kept (it gains a comma
  only if it had none, which is unavoidable); comments before the closing bracket stay last.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

# node type -> (elements attribute, opening bracket attribute, closing bracket attribute)
_LAYOUT = {
    cst.Dict: ("elements", "lbrace", "rbrace"),
    cst.Set: ("elements", "lbrace", "rbrace"),
    cst.List: ("elements", "lbracket", "rbracket"),
    cst.Tuple: ("elements", "lpar", "rpar"),
    cst.Subscript: ("slice", "lbracket", "rbracket"),
    cst.ImportFrom: ("names", "lpar", "rpar"),
}

PLAIN_LINE = cst.TrailingWhitespace()


def elements(node: cst.CSTNode) -> Sequence[cst.CSTNode]:
    """The elements of a supported sequence node."""
    return getattr(node, _LAYOUT[type(node)][0])


def _open(node: cst.CSTNode):
    bracket = getattr(node, _LAYOUT[type(node)][1])
    if isinstance(bracket, Sequence):  # Tuple.lpar: innermost paren is last
        bracket = bracket[-1] if bracket else None
    return bracket.whitespace_after if bracket is not None else None


def _close(node: cst.CSTNode):
    bracket = getattr(node, _LAYOUT[type(node)][2])
    if isinstance(bracket, Sequence):  # Tuple.rpar: innermost paren is first
        bracket = bracket[0] if bracket else None
    return bracket.whitespace_before if bracket is not None else None


def _with_close(node: cst.CSTNode, whitespace) -> cst.CSTNode:
    attr = _LAYOUT[type(node)][2]
    bracket = getattr(node, attr)
    if isinstance(bracket, Sequence):
        inner = bracket[0].with_changes(whitespace_before=whitespace)
        return node.with_changes(**{attr: [inner, *bracket[1:]]})
    return node.with_changes(**{attr: bracket.with_changes(whitespace_before=whitespace)})


def trailing_comment(node: cst.CSTNode, index: int) -> cst.Comment | None:
    """The same-line comment after element `index` (`"a": 1,  # note`), if any."""
    items = elements(node)
    gaps = []
    comma = items[index].comma
    if isinstance(comma, cst.Comma):
        gaps.append(comma.whitespace_after)
    if index == len(items) - 1:
        gaps.append(_close(node))
    for gap in gaps:
        if isinstance(gap, cst.ParenthesizedWhitespace):
            return gap.first_line.comment
    return None


def comments_above(node: cst.CSTNode, index: int) -> list[str]:
    """The full-line comments between element `index - 1` and element `index`."""
    gap = _open(node) if index == 0 else elements(node)[index - 1].comma.whitespace_after
    if not isinstance(gap, cst.ParenthesizedWhitespace):
        return []
    return [line.comment.value for line in gap.empty_lines if line.comment is not None]


def _plain_gap(gap: cst.ParenthesizedWhitespace, comment: cst.Comment | None, **changes):
    first = PLAIN_LINE
    if comment is not None:
        first = cst.TrailingWhitespace(whitespace=cst.SimpleWhitespace("  "), comment=comment)
    return gap.with_changes(first_line=first, **changes)


def _inline_gap(items: Sequence[cst.CSTNode]) -> cst.BaseParenthesizableWhitespace:
    """The separator used between elements on one line (or a plain next line)."""
    for item in items[:-1]:
        gap = item.comma.whitespace_after
        if isinstance(gap, cst.ParenthesizedWhitespace):
            return _plain_gap(gap, None, empty_lines=[])
        return gap
    return cst.SimpleWhitespace(" ")


def _element_indent(node: cst.CSTNode, before_last: int):
    """The `last_line` indentation elements sit at, from the gap before element `before_last`."""
    items = elements(node)
    gap = _open(node) if before_last == 0 else items[before_last - 1].comma.whitespace_after
    if isinstance(gap, cst.ParenthesizedWhitespace):
        return gap.last_line
    close = _close(node)
    base = close.last_line.value if isinstance(close, cst.ParenthesizedWhitespace) else ""
    return cst.SimpleWhitespace(base + "    ")


def insert(
    node: cst.CSTNode,
    index: int,
    new: cst.CSTNode,
    *,
    template: cst.CSTNode,
    comment: cst.Comment | None = None,
) -> cst.CSTNode:
    """`node` with `new` inserted before element `index` (`len` = append).

    `template` is the neighbour whose comma spacing the new element copies; `comment` is a
    trailing comment (a `# noqa` pragma) to put after the new element on its line.
    """
    items = list(elements(node))
    count = len(items)
    if count == 0:
        return _first(node, new)
    comma_before = (
        template.comma.whitespace_before
        if isinstance(template.comma, cst.Comma)
        else cst.SimpleWhitespace("")
    )

    def comma(after) -> cst.Comma:
        return cst.Comma(whitespace_before=comma_before, whitespace_after=after)

    if index < count:
        if index == 0:
            gap = _open(node)
            if isinstance(gap, cst.ParenthesizedWhitespace):
                after = _plain_gap(gap, comment, empty_lines=[])
            else:
                after = _inline_gap(items)
        else:
            gap = items[index - 1].comma.whitespace_after
            if isinstance(gap, cst.ParenthesizedWhitespace):
                items[index - 1] = items[index - 1].with_changes(
                    comma=items[index - 1].comma.with_changes(
                        whitespace_after=gap.with_changes(empty_lines=[])
                    )
                )
                after = _plain_gap(gap, comment)
            else:
                after = gap
        items.insert(index, new.with_changes(comma=comma(after)))
        return node.with_changes(**{_LAYOUT[type(node)][0]: items})
    return _append(node, items, new, comma, comment)


def _first(node: cst.CSTNode, new: cst.CSTNode) -> cst.CSTNode:
    """The only element of an empty container: inline for `{}`, on its own indented line
    with a trailing comma when the brackets are on separate lines (`{\n}`)."""
    attr = _LAYOUT[type(node)][0]
    gap = _open(node)
    if not isinstance(gap, cst.ParenthesizedWhitespace):
        return node.with_changes(**{attr: [new.with_changes(comma=cst.MaybeSentinel.DEFAULT)]})
    closing = gap.last_line.value  # the closing bracket's indent
    node = _with_open(node, gap.with_changes(last_line=cst.SimpleWhitespace(closing + "    ")))
    line_break = cst.ParenthesizedWhitespace(
        first_line=PLAIN_LINE, indent=gap.indent, last_line=cst.SimpleWhitespace(closing)
    )
    node = _with_close(node, cst.SimpleWhitespace(""))
    return node.with_changes(
        **{attr: [new.with_changes(comma=cst.Comma(whitespace_after=line_break))]}
    )


def _with_open(node: cst.CSTNode, whitespace) -> cst.CSTNode:
    attr = _LAYOUT[type(node)][1]
    bracket = getattr(node, attr)
    if isinstance(bracket, Sequence):  # Tuple.lpar: innermost paren is last
        inner = bracket[-1].with_changes(whitespace_after=whitespace)
        return node.with_changes(**{attr: [*bracket[:-1], inner]})
    return node.with_changes(**{attr: bracket.with_changes(whitespace_after=whitespace)})


def _append(node, items, new, comma, comment) -> cst.CSTNode:
    last = items[-1]
    has_comma = isinstance(last.comma, cst.Comma)
    after_comma = last.comma.whitespace_after if has_comma else None
    close = _close(node)
    indent = _element_indent(node, len(items) - 1)
    attr = _LAYOUT[type(node)][0]

    if isinstance(after_comma, cst.ParenthesizedWhitespace):
        # `a,  # note\n)` with the newline after the comma (parenthesised import lists)
        head = after_comma.with_changes(empty_lines=[], last_line=indent)
        items[-1] = last.with_changes(comma=last.comma.with_changes(whitespace_after=head))
        items.append(new.with_changes(comma=comma(_plain_gap(after_comma, comment))))
        return node.with_changes(**{attr: items})

    if isinstance(close, cst.ParenthesizedWhitespace):
        # newline before the closing bracket: `"b": 2,  # note\n}` or `"b": 2\n}`
        head = close.with_changes(empty_lines=[], last_line=indent)
        if has_comma:
            items[-1] = last.with_changes(comma=last.comma.with_changes(whitespace_after=head))
            new_comma = comma(after_comma)
        else:
            items[-1] = last.with_changes(comma=comma(head))
            new_comma = cst.MaybeSentinel.DEFAULT
        items.append(new.with_changes(comma=new_comma))
        node = node.with_changes(**{attr: items})
        return _with_close(node, _plain_gap(close, comment))

    # everything on one line (or the closing bracket right after the last element)
    separator = _inline_gap(items)
    if has_comma and not (isinstance(node, cst.Tuple) and len(items) == 1):
        items[-1] = last.with_changes(comma=last.comma.with_changes(whitespace_after=separator))
        items.append(new.with_changes(comma=comma(after_comma)))
    else:
        items[-1] = last.with_changes(comma=comma(separator))
        items.append(new.with_changes(comma=cst.MaybeSentinel.DEFAULT))
    return node.with_changes(**{attr: items})
