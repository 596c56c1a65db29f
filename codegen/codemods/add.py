"""`add_entry`: the one entry point the commands use to insert a registry entry.

Why: `codegen registry add`, `codegen register` and `codegen lint --fix` must behave
identically, so they all come through here: parse, locate the container the selector names,
hand it to the codemod for its kind, and return the new source without writing anything
(the caller decides between writing, diffing and checking).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Sequence

from libcst.metadata import MetadataWrapper

from codegen.codemods import style
from codegen.codemods.base import Entry, Outcome
from codegen.codemods.dict_entry import DictEntry
from codegen.codemods.elif_branch import ElifBranch
from codegen.codemods.files import parse
from codegen.codemods.import_line import ImportLine
from codegen.codemods.import_name import ImportName
from codegen.codemods.import_sites import locate_imports
from codegen.codemods.imports import ensure_imports
from codegen.codemods.literal_member import LiteralMember
from codegen.codemods.locate import Site, locate
from codegen.codemods.member import Member
from codegen.codemods.pair_entry import PairEntry
from codegen.codemods.selector import Selector, parse_selector
from codegen.errors import CodegenError
from codegen.lint.read import Parsed, find_containers

CODEMODS = {
    codemod.kind: codemod
    for codemod in (
        DictEntry(),
        PairEntry(),
        Member(),
        LiteralMember(),
        ImportName(),
        ImportLine(),
        ElifBranch(),
    )
}
KEYED_ONLY = {"members", "literal", "import_names", "import_lines"}


def _locate(source: str, selector: Selector, path: str) -> tuple[MetadataWrapper, Site]:
    wrapper = MetadataWrapper(parse(source, path), unsafe_skip_copy=True)  # we own the tree
    if selector.kind == "imports":
        return wrapper, locate_imports(wrapper, selector, path)
    return wrapper, locate(wrapper, selector, path)


def read_entries(
    source: str, container: str, *, path: str = "<string>"
) -> tuple[Site, list[Entry]]:
    """The located container and its entries, exactly as the codemods see them."""
    wrapper, site = _locate(source, parse_selector(container), path)
    return site, CODEMODS[site.kind].entries(wrapper, site)


def add_entry(
    source: str,
    container: str,
    key: str,
    values: Sequence[str] = (),
    *,
    path: str = "<string>",
    section: str | None = None,
    expression: bool = False,
    imports: Sequence[str] = (),
    line_length: int | None = None,
) -> Outcome:
    """Insert `key` (with `values`) into `container` of `source`; return the outcome.

    The returned source equals `source` when an identical entry is already there. With
    `expression`, the one VALUE is Python source for the whole value. `imports` are
    `from M import N` statements the entry needs (added unless N is bound). New entries are
    laid out for `line_length` (default: the repository's configured length, see `style`).
    Every failure is a `CodegenError` naming `path` (and a line where there is one).
    """
    selector = parse_selector(container)
    if not key:
        raise CodegenError("empty key", path=path)
    wrapper, site = _locate(source, selector, path)
    if site.kind in KEYED_ONLY and values:
        raise CodegenError(
            f"{site.label} holds plain members; it takes a KEY and no VALUE (got {len(values)})",
            path=path,
            line=site.line,
        )
    if expression and len(values) != 1:
        raise CodegenError("an expression value is one VALUE", path=path)
    width = line_length or style.line_length(path)
    outcome = CODEMODS[site.kind].add(
        wrapper,
        site,
        key,
        values,
        path=path,
        section=section,
        expression=expression,
        line_length=width,
    )
    if outcome.status == "added":
        if imports:
            outcome.source, reports = ensure_imports(outcome.source, imports, path, width)
            outcome.notes += reports
        _verify(source, outcome.source, selector, key, path)
    return outcome


def _verify(old: str, new: str, selector: Selector, key: str, path: str) -> None:
    """Re-read the result independently (CPython's parser, lint's `ast` reader) before anyone
    writes it: it must compile and hold the old keys plus exactly one `key`."""
    try:
        before, after = ast.parse(old), ast.parse(new)
    except SyntaxError as err:
        raise CodegenError(
            f"internal error: the edit would not compile ({err.msg}); nothing written", path=path
        ) from None
    found_before = find_containers(Parsed(before, tuple(old.splitlines())), selector)
    found_after = find_containers(Parsed(after, tuple(new.splitlines())), selector)
    if len(found_before) != 1 or len(found_after) != 1:
        return  # the readers only disagree on exotic nesting; the compile check stands
    keys_before = Counter(e.key for e in found_before[0].entries)
    keys_after = Counter(e.key for e in found_after[0].entries)
    if keys_after - keys_before != Counter([key]) or keys_before - keys_after:
        raise CodegenError(
            f"internal error: the edit of '{selector}' did not add exactly {key!r}; "
            "nothing written",
            path=path,
        )
