"""What every registry codemod shares: entries, the insert plan, and the outcome.

Why: the rules that make an insert trustworthy (an identical entry is a no-op, a different
value under the same key is refused, the position follows the container's own order, the
shape comes from the nearest neighbour with the same number of values) must not differ
between a dict, an `OrderedDict([...])`, an import block or an `if/elif` chain. Each
codemod only says how to read its entries and how to build a new one; `plan()` decides.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from codegen.codemods import order, shape
from codegen.errors import CodegenError


@dataclass
class Entry:
    """One registered item: its key, its values as text (None if not plain), where it is."""

    key: str
    index: int  # position in the codemod's own element list
    line: int
    values: tuple[str, ...] | None
    node: cst.CSTNode
    comments: tuple[str, ...] = ()  # full-line comments right above it
    source: str = ""  # the value's code, normalised (compares expression values)


@dataclass
class Plan:
    """Where the new entry goes and what it is copied from."""

    position: int  # index into the entries list
    reason: str
    template: Entry | None
    values: list[str]
    expression: bool = False  # values[0] is Python source for the whole value


@dataclass
class Outcome:
    """The result of one `add`: the new source (unchanged if the entry was there already)."""

    status: str  # "added" | "present" | "skipped"
    source: str
    line: int
    reason: str
    label: str
    key: str = ""
    notes: list[str] = field(default_factory=list)  # what the user still has to do


class Conflict(CodegenError):
    """The key is there with another value (`--check` reports it as "differs", exit 1)."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        super().__init__(message, path=path, line=line)
        self.line = line or 1
        self.existing = message.split("already ", 1)[-1].split(";", 1)[0]


def normalized(code: str) -> str:
    """Python expression source, independent of layout (for comparing expression values)."""
    try:
        return ast.dump(ast.parse(code.strip(), mode="eval"))
    except SyntaxError:
        return code.strip()


def arity(entry: Entry) -> int | None:
    return None if entry.values is None else len(entry.values)


def plan(
    entries: Sequence[Entry],
    key: str,
    values: Sequence[str],
    *,
    label: str,
    path: str,
    line: int,
    section: str | None = None,
    expression: bool = False,
) -> Plan | Entry:
    """The insert plan for `key`, or the existing identical entry (a no-op).

    Raises `Conflict` for a conflicting duplicate, `CodegenError` for a missing section or
    values that no neighbour's shape can hold. With `expression`, `values[0]` is the whole
    value as Python source and any neighbour gives the entry's layout.
    """
    if expression:
        return _plan_expression(entries, key, values[0], label, path, line, section)
    arities = {arity(e) for e in entries} - {None}
    wanted = len(values)
    if len(values) == 1 and 2 in arities and 1 not in arities:
        wanted = 2  # `mod:Class` for a container of (module, class) pairs
    same = [e.values for e in entries if e.values is not None and len(e.values) == wanted]
    columns = [[row[i] for row in same] for i in range(wanted)]
    values = shape.adapt(values, columns, wanted)
    for entry in entries:
        if entry.key != key:
            continue
        if entry.values is not None and tuple(values) == entry.values:
            return entry
        shown = (
            ", ".join(map(repr, entry.values)) if entry.values else "a value codegen cannot compare"
        )
        raise Conflict(
            f"duplicate key {key!r}: {label} already maps it to {shown}; "
            "edit or remove that entry by hand",
            path=path,
            line=entry.line,
        )
    position, reason = _position(entries, key, label, path, line, section)
    if not entries:
        return Plan(position, "first entry", None, list(values))
    candidates = [e.index for e in entries if arity(e) == len(values)]
    if not candidates:
        have = sorted(arities)
        raise CodegenError(
            f"{label} holds entries with {' or '.join(map(str, have)) or 'non-plain'} value(s); "
            f"got {len(values)} value(s) for {key!r}",
            path=path,
            line=line,
        )
    return Plan(position, reason, _template(entries, candidates, position), list(values))


def _plan_expression(entries, key, value, label, path, line, section) -> Plan | Entry:
    for entry in entries:
        if entry.key != key:
            continue
        if entry.source == normalized(value):
            return entry
        raise Conflict(
            f"duplicate key {key!r}: {label} already has another value for it; "
            "edit or remove that entry by hand",
            path=path,
            line=entry.line,
        )
    position, reason = _position(entries, key, label, path, line, section)
    if not entries:
        return Plan(position, "first entry", None, [value], expression=True)
    template = _template(entries, [e.index for e in entries], position)
    return Plan(position, reason, template, [value], expression=True)


def _template(entries: Sequence[Entry], candidates: list[int], position: int) -> Entry:
    by_index = {e.index: e for e in entries}
    anchor = entries[position].index if position < len(entries) else entries[-1].index + 1
    return by_index[shape.nearest(candidates, anchor)[0]]


def _position(entries, key, label, path, line, section) -> tuple[int, str]:
    keys = [e.key for e in entries]
    low, high = 0, len(entries)
    if section is not None:
        found = order.section_range([e.comments for e in entries], section)
        if found is None:
            raise CodegenError(
                f"no section comment containing {section!r} in {label}", path=path, line=line
            )
        low, high = found
    position, reason = order.choose_position(keys[low:high], key)
    position += low
    if section is not None:
        reason += f" in section {section!r}"
    return position, reason


def present(entry: Entry, source: str, label: str) -> Outcome:
    return Outcome("present", source, entry.line, "already present", label, entry.key)


def replace(wrapper: MetadataWrapper, old: cst.CSTNode, new: cst.CSTNode) -> cst.Module:
    """The module with `old` replaced by `new`, rebuilding only the statement holding it.

    Equivalent to `module.deep_replace(old, new)`, but a registry sits in one top-level
    statement, and walking only that one keeps a 3000-line file fast.
    """
    module = wrapper.module
    if old is module:
        return new  # type: ignore[return-value]
    positions = wrapper.resolve(PositionProvider)
    line = positions[old].start.line
    for index, statement in enumerate(module.body):
        span = positions[statement]
        if span.start.line <= line <= span.end.line:
            body = list(module.body)
            body[index] = statement.deep_replace(old, new)
            return module.with_changes(body=body)
    return module.deep_replace(old, new)  # type: ignore[return-value]
