"""Move out-of-order entries of a sorted container to their sorted place (`lint --fix` CG005).

Why: a registry that is kept sorted drifts when someone appends by hand; the lint reports
the strays (CG005) and this puts each back. An entry on lines of its own is taken out with
its lines (a comment line above it stays where it is) and added again by the insert codemod,
which, the container being sorted once the strays are out, picks the sorted position and
the neighbour's shape. Entries sharing a line with others, or whose value is not plain
(cannot be rebuilt), are left alone and the finding stays.

    before:  SPECS = {            after:  SPECS = {
                 "llama": ...,                "deepseek_v3": ...,
                 "qwen3": ...,                "llama": ...,
                 "deepseek_v3": ...,          "qwen3": ...,
             }                            }
"""

from __future__ import annotations

from collections.abc import Sequence

from libcst.metadata import PositionProvider

from codegen.codemods.add import CODEMODS, _locate, add_entry
from codegen.codemods.selector import parse_selector


def sort_strays(
    source: str, container: str, keys: Sequence[str], *, path: str
) -> tuple[str, list[str]]:
    """`source` with each of `keys` moved to its sorted place; (new source, moved keys)."""
    wrapper, site = _locate(source, parse_selector(container), path)
    if site.kind not in ("dict", "pairs", "members", "literal"):
        return source, []
    entries = CODEMODS[site.kind].entries(wrapper, site)
    positions = wrapper.resolve(PositionProvider)
    lines = source.splitlines(keepends=True)
    cut: list[tuple[int, int]] = []
    moved: list[tuple[str, tuple[str, ...]]] = []
    for entry in entries:
        if entry.key not in keys or entry.values is None:
            continue
        span = positions[entry.node]
        start, end = span.start.line, span.end.line
        before = lines[start - 1][: span.start.column]
        after = lines[end - 1][span.end.column :].strip()
        rest = after[1:].strip() if after.startswith(",") else after
        if before.strip() or (rest and not rest.startswith("#")):
            continue  # shares its line with other code
        cut.append((start, end))
        moved.append((entry.key, entry.values))
    if not moved:
        return source, []
    for start, end in sorted(cut, reverse=True):
        del lines[start - 1 : end]
    text = "".join(lines)
    for key, values in moved:
        text = add_entry(text, container, key, list(values), path=path).source
    return text, [key for key, _ in moved]
