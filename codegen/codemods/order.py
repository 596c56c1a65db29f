"""Where a new key goes, judged from the keys already there.

Why: a registry's order is part of its formatting. A sorted container stays sorted; an
unsorted one (grouped by hand) gets the new key after its family (`qwen3_moe` after `qwen3`,
`Qwen3MoeForCausalLM` after `Qwen3ForCausalLM`), and failing that, at the end. The same
rules tell `codegen lint` which containers are meant to be sorted.

Pure Python (no libcst) so `codegen lint` can share it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence

_SEPARATOR = re.compile(r"[_\-./:\s]")
_CAMEL_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def sort_order(keys: Sequence[str]) -> Callable[[str], str] | None:
    """The key function the keys are sorted by (plain or case-insensitive), or None.

    A container of one entry counts as sorted: it is the first entry of a registry
    whose order is not yet decided, and inserting sorted keeps the next `lint` clean.
    An empty one says nothing.
    """
    if not keys:
        return None
    for fold in (_plain, str.casefold):
        folded = [fold(k) for k in keys]
        if all(a <= b for a, b in zip(folded, folded[1:], strict=False)):
            return fold
    return None


def _plain(key: str) -> str:
    return key


def family(key: str) -> str:
    """The first word of a key: `qwen3_moe` -> `qwen3`, `DeepseekV3ForCausalLM` -> `deepseek`."""
    head = _SEPARATOR.split(key, maxsplit=1)[0]
    head = _CAMEL_BREAK.split(head, maxsplit=1)[0]
    return head.casefold()


def base_family(key: str) -> str:
    """The family without its version digits: `mistral4` -> `mistral`, `qwen3` -> `qwen`."""
    return family(key).rstrip("0123456789") or family(key)


def choose_position(keys: Sequence[str], key: str) -> tuple[int, str]:
    """Index among `keys` to insert `key` at, and a short reason for the report.

    A container sorted but for a few stray entries (see `misplaced`) still gets a sorted
    insert, placed among the entries that are in order. Otherwise the key goes after the
    last entry of its family (`Qwen3MoeForCausalLM` after `Qwen3ForCausalLM`), failing that
    after the last entry of its family without version digits (`Mistral4ForCausalLM` after
    `MistralLarge3ForCausalLM`), failing that at the end.
    """
    fold = sort_order(keys)
    if fold is not None:
        index = bisect.bisect_right([fold(k) for k in keys], fold(key))
        return index, "sorted position"
    near = _near_sorted(keys)
    if near is not None:
        fold, kept = near
        earlier = [i for i in kept if fold(keys[i]) <= fold(key)]
        index = earlier[-1] + 1 if earlier else kept[0]
        return index, "sorted position (ignoring out-of-order entries)"
    for kin in (family, base_family):
        wanted = kin(key)
        same = [i for i, existing in enumerate(keys) if kin(existing) == wanted]
        if same:
            return same[-1] + 1, f"after {keys[same[-1]]!r}, same family"
    return len(keys), "at the end"


def misplaced(keys: Sequence[str], *, always_sorted: bool = False) -> list[int]:
    """Indices of keys that break an otherwise sorted container (for `codegen lint`).

    A container counts as meant-to-be-sorted when it has at least seven keys and all but a
    few (at most one in ten, at least one) are in sorted order: a hand-grouped container
    that short is rarely that close to sorted by chance. `always_sorted` is for containers
    sorted by policy (the house registry): any key outside the longest sorted run counts.
    Containers that are fully sorted, or not sorted on purpose, return nothing.
    """
    near = _near_sorted(keys, always_sorted=always_sorted)
    if near is None:
        return []
    kept = set(near[1])
    return [i for i in range(len(keys)) if i not in kept]


def _near_sorted(
    keys: Sequence[str], *, always_sorted: bool = False
) -> tuple[Callable[[str], str], list[int]] | None:
    """(key function, indices in order) when only a few keys are out of order, else None."""
    if len(keys) < (2 if always_sorted else 7):
        return None
    best: tuple[Callable[[str], str], list[int]] | None = None
    for fold in (_plain, str.casefold):
        keep = _longest_sorted_run(keys, fold)
        if best is None or len(keep) > len(best[1]):
            best = (fold, keep)
    assert best is not None
    stray = len(keys) - len(best[1])
    if stray == 0 or (not always_sorted and stray > max(1, len(keys) // 10)):
        return None
    return best


def _longest_sorted_run(keys: Sequence[str], fold: Callable[[str], str]) -> list[int]:
    """Indices of a longest non-decreasing subsequence (patience sorting, O(n log n))."""
    folded = [fold(k) for k in keys]
    tails: list[str] = []
    tail_index: list[int] = []
    previous = [-1] * len(folded)
    for i, value in enumerate(folded):
        slot = bisect.bisect_right(tails, value)
        if slot == len(tails):
            tails.append(value)
            tail_index.append(i)
        else:
            tails[slot] = value
            tail_index[slot] = i
        previous[i] = tail_index[slot - 1] if slot else -1
    run, i = [], tail_index[-1] if tail_index else -1
    while i != -1:
        run.append(i)
        i = previous[i]
    return run[::-1]


def section_range(comments: Sequence[Sequence[str]], wanted: str) -> tuple[int, int] | None:
    """The entries under the section comment containing `wanted`, as a `[start, stop)` range.

    `comments[i]` are the full-line comments right above entry i. A section runs from the
    entry under the matching comment to the entry under the next comment that looks like a
    header of the same kind (same leading punctuation, e.g. `# [`), or to the end.
    """
    needle = wanted.casefold()
    for start, above in enumerate(comments):
        header = next((c for c in above if needle in c.casefold()), None)
        if header is None:
            continue
        prefix = _header_prefix(header)
        for stop in range(start + 1, len(comments)):
            if any(_header_prefix(c) == prefix for c in comments[stop]):
                return start, stop
        return start, len(comments)
    return None


def _header_prefix(comment: str) -> str:
    """The punctuation a section header starts with: `# [Decoder-only]` -> `[`."""
    body = comment.lstrip("#").lstrip()
    match = re.match(r"[^\w\s]*", body)
    return match.group(0) if match else ""
