"""The part of `conversion_mapping.py` that builds the entries a few keys need.

`_build_checkpoint_conversion_mapping()` builds the conversions of every model transformers
knows (2,700 lines; parsing it with libcst cost ~0.3 s of a scaffold), while an analysis
asks for one or two keys. The function is a table: one dict literal, then statements that
set or extend `mapping["key"]` from other keys, and a loop copying a base pattern's entry to
every model type of a module-level table. This module slices it with the standard `ast`
(fast, no libcst) to the statements and dict entries the wanted keys depend on
(transitively, and every statement that touches a needed key, so aliasing and in-place
edits come along), and returns that source for the interpreter, which then computes the
wanted entries exactly as the full function would. A function of any other shape gives
None: the caller interprets the whole file.
"""

from __future__ import annotations

import ast
import re
from collections import Counter

FUNCTION = "_build_checkpoint_conversion_mapping"


class _Shape(Exception):
    """The function is not of the table shape this module slices."""


def sliced_source(text: str, wanted: set[str]) -> str | None:
    """The module `text` with `FUNCTION` cut down to what `wanted` keys need, or None."""
    hollow = _hollow(text)
    if hollow is not None:  # the dict's entries apart: only the needed ones are parsed
        short, entries = hollow
        try:
            return _sliced(_Lines(short), ast.parse(short), wanted, entries)
        except (SyntaxError, ValueError, RecursionError, _Shape):
            pass  # not the layout `_hollow` expects: the whole file, parsed
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    try:
        return _sliced(_Lines(text), tree, wanted)
    except _Shape:
        return None


_INIT = re.compile(rf"^def {FUNCTION}\(\):\n    mapping = \{{\n", re.M)
_INIT_END = re.compile(r"^    \}\n", re.M)
_ENTRY_LINE = re.compile(r"^        (?=\S)", re.M)  # a line at the dict's entry indentation
_ENTRY = re.compile(r'"([^"\\\n]*)": ')  # `"key": ` opening an entry


def _hollow(text: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(`text` with the body of `mapping = {...}` taken out, [(key, entry text)]) when the
    dict is laid out one entry per line group: every line at the entries' indentation opens
    an entry (`"key": `), is a comment or closes a bracket. The dict is most of the file;
    parsing only the rest and the needed entries costs a fraction (each needed entry is
    checked to parse as that key alone)."""
    start = _INIT.search(text)
    if start is None:
        return None
    end = _INIT_END.search(text, start.end())
    if end is None:
        return None
    body = text[start.end() : end.start()]
    entries: list[tuple[str, str]] = []
    opened = None
    for line in _ENTRY_LINE.finditer(body):
        entry = _ENTRY.match(body, line.end())
        if entry is not None:
            if opened is not None:
                entries.append((opened[0], body[opened[1] : line.start()]))
            opened = (entry.group(1), line.start())
        elif body[line.end()] not in "#)]}":
            return None
    if opened is None:
        return None
    entries.append((opened[0], body[opened[1] :]))
    first = body.find(entries[0][1])
    if any(line.strip()[:1] not in ("", "#") for line in body[:first].splitlines()):
        return None  # something before the first entry
    return text[: start.end()] + text[end.start() :], entries


class _Lines:
    """Source segments by ast position (columns are UTF-8 byte offsets)."""

    def __init__(self, text: str):
        self.raw = text
        self.lines = text.encode().splitlines(keepends=True)  # \n, \r\n, \r: as ast counts

    def segment(self, node: ast.AST, padded: bool = False) -> str:
        first, last = node.lineno - 1, node.end_lineno - 1
        start, end = node.col_offset, node.end_col_offset
        if first == last:
            chunk = self.lines[first][start:end]
        else:
            chunk = b"".join(
                [self.lines[first][start:], *self.lines[first + 1 : last], self.lines[last][:end]]
            )
        return (b" " * start if padded else b"").decode() + chunk.decode()


def _sliced(text: _Lines, tree: ast.Module, wanted: set[str], entries=None) -> str:
    function = next(
        (s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == FUNCTION), None
    )
    if function is None or function.args.args or function.decorator_list:
        raise _Shape
    tables = _module_tables(tree)
    body = function.body
    if not body or not _is_init(body[0]):
        raise _Shape
    facts = [_effects(statement, tables) for statement in body[1:]]
    # a pattern loop over a table used nowhere else runs over the rows of needed keys only
    # (each reads its own base pattern), so the rest of the table is left out
    loops = {i: _loop_table(s) for i, s in enumerate(body[1:]) if isinstance(s, ast.For)}
    looped = Counter(loops.values())  # the name's one other mention is its assignment
    cut = {name for name in looped if len(re.findall(rf"\b{name}\b", text.raw)) == looped[name] + 1}
    needed = set(wanted)
    kept: set[int] = set()
    while True:  # to a fixpoint: a later statement may alias or extend a needed entry
        before = len(needed), len(kept)
        for index, (writes, reads) in enumerate(facts):
            if writes is None or writes & needed:
                kept.add(index)
                table = loops.get(index)
                if table in cut:
                    reads = {base for key, base in tables[table].items() if key in needed}
                needed |= reads
        if (len(needed), len(kept)) == before:
            break
    init = _init_source(text, body[0], needed) if entries is None else _entries(entries, needed)
    statements = [
        text.segment(statement, padded=True)
        for index, statement in enumerate(body[1:])
        if index in kept
    ]
    lines = [f"def {FUNCTION}():", init, *statements]
    parts = [
        "\n".join(lines)
        if statement is function
        else _table_source(text, statement, needed)
        if _assigned(statement) in cut
        else text.segment(statement, padded=True)
        for statement in tree.body
        if statement is function or not isinstance(statement, ast.FunctionDef | ast.ClassDef)
    ]
    return "\n".join(parts) + "\n"


def _loop_table(loop: ast.For) -> str:
    """The table a pattern loop iterates (`_effects` has checked the shape)."""
    return loop.iter.func.value.id


def _assigned(statement: ast.stmt) -> str | None:
    if isinstance(statement, ast.Assign) and isinstance(statement.targets[0], ast.Name):
        return statement.targets[0].id
    return None


def _table_source(text: _Lines, statement: ast.Assign, needed: set[str]) -> str:
    """`NAME = {...}` with the rows of needed keys only, in their order."""
    entries = [
        f"    {text.segment(key)}: {text.segment(value)},"
        for key, value in zip(statement.value.keys, statement.value.values, strict=True)
        if _string(key) in needed
    ]
    return "\n".join([f"{statement.targets[0].id} = {{", *entries, "}"])


def _module_tables(tree: ast.Module) -> dict[str, dict[str, str]]:
    """Module-level `NAME = {"a": "b", ...}` tables of string pairs."""
    tables = {}
    for statement in tree.body:
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and isinstance(statement.value, ast.Dict)
        ):
            pairs = {}
            for key, value in zip(statement.value.keys, statement.value.values, strict=True):
                if not (_string(key) is not None and _string(value) is not None):
                    break
                pairs[_string(key)] = _string(value)
            else:
                tables[statement.targets[0].id] = pairs
    return tables


def _string(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_init(statement: ast.stmt) -> bool:
    """`mapping = {"key": ..., ...}` with string keys only."""
    return (
        isinstance(statement, ast.Assign)
        and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name)
        and statement.targets[0].id == "mapping"
        and isinstance(statement.value, ast.Dict)
        and all(_string(key) is not None for key in statement.value.keys)
    )


def _entries(entries: list[tuple[str, str]], needed: set[str]) -> str:
    """`mapping = {...}` of the needed entries cut out by `_hollow`, each checked to be
    exactly its key's entry."""
    kept = []
    for key, entry in entries:
        if key not in needed:
            continue
        try:
            parsed = ast.parse("{\n" + entry + "\n}", mode="eval").body
        except (SyntaxError, ValueError, RecursionError):
            raise _Shape from None
        if not (isinstance(parsed, ast.Dict) and [_string(k) for k in parsed.keys] == [key]):
            raise _Shape
        kept.append(entry.rstrip("\n"))
    return "\n".join(["    mapping = {", *kept, "    }"])


def _init_source(text: _Lines, statement: ast.Assign, needed: set[str]) -> str:
    entries = []
    for key, value in zip(statement.value.keys, statement.value.values, strict=True):
        if _string(key) in needed:
            entries.append(f"        {text.segment(key)}: {text.segment(value)},")
    return "\n".join(["    mapping = {", *entries, "    }"])


def _effects(statement: ast.stmt, tables) -> tuple[set[str] | None, set[str]]:
    """(keys of `mapping` the statement may change, keys it reads); writes None: the
    statement is always kept (a local it binds may be read by a kept one)."""
    if isinstance(statement, ast.Return):
        if not (isinstance(statement.value, ast.Name) and statement.value.id == "mapping"):
            raise _Shape
        return None, set()
    loop = _pattern_loop(statement, tables)
    if loop is not None:
        return loop
    target = _key_target(statement)
    if target is not None:
        value = statement.value
        reads = _reads(value)
        if isinstance(statement, ast.AugAssign):
            reads.add(target)
        return {target}, reads
    reads = _reads(statement)
    if isinstance(statement, ast.Expr) and reads:
        return reads, reads  # a call on entries (`mapping["a"].append(...)`) may change them
    return None, reads  # binds other names (or anything else): always kept


def _key_target(statement: ast.stmt) -> str | None:
    """K of `mapping[K] = ...` / `mapping[K] += ...`."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, ast.AugAssign):
        target = statement.target
    else:
        return None
    if (
        isinstance(target, ast.Subscript)
        and isinstance(target.value, ast.Name)
        and target.value.id == "mapping"
    ):
        key = _string(target.slice)
        if key is None:
            raise _Shape
        return key
    return None


def _reads(node: ast.AST) -> set[str]:
    """Keys read as `mapping["key"]`; any other use of `mapping` is not the table shape."""
    keys: set[str] = set()
    parents = {}
    for parent in ast.walk(node):
        for child in ast.iter_child_nodes(parent):
            parents[child] = parent
    for found in ast.walk(node):
        if isinstance(found, ast.Name) and found.id == "mapping":
            parent = parents.get(found)
            if not (isinstance(parent, ast.Subscript) and parent.value is found):
                raise _Shape
            key = _string(parent.slice)
            if key is None:
                raise _Shape
            keys.add(key)
    return keys


def _pattern_loop(statement: ast.stmt, tables) -> tuple[set[str], set[str]] | None:
    """`for a, b in TABLE.items(): if a in mapping: continue; mapping[a] = mapping[b].copy()`
    (in any of its spellings the shape allows): writes TABLE's keys, reads its values."""
    if not isinstance(statement, ast.For):
        return None
    loop = statement
    if not (
        isinstance(loop.iter, ast.Call)
        and isinstance(loop.iter.func, ast.Attribute)
        and loop.iter.func.attr == "items"
        and isinstance(loop.iter.func.value, ast.Name)
        and loop.iter.func.value.id in tables
        and not loop.iter.args
        and isinstance(loop.target, ast.Tuple)
        and len(loop.target.elts) == 2
        and all(isinstance(e, ast.Name) for e in loop.target.elts)
        and not loop.orelse
    ):
        raise _Shape
    key, base = (e.id for e in loop.target.elts)
    for inner in loop.body:
        for found in ast.walk(inner):
            if isinstance(found, ast.Name) and found.id == "mapping":
                continue
            if isinstance(found, ast.Name) and found.id not in (key, base, "mapping"):
                raise _Shape  # only the loop's own names and the table
        if not _loop_statement(inner, key, base):
            raise _Shape
    table = tables[loop.iter.func.value.id]
    return set(table), set(table.values())


def _loop_statement(statement: ast.stmt, key: str, base: str) -> bool:
    """`if key in mapping: continue` or `mapping[key] = mapping[base].copy()`."""
    if isinstance(statement, ast.If):
        test = statement.test
        return (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == key
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.In)
            and isinstance(test.comparators[0], ast.Name)
            and test.comparators[0].id == "mapping"
            and len(statement.body) == 1
            and isinstance(statement.body[0], ast.Continue)
            and not statement.orelse
        )
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target, value = statement.targets[0], statement.value
        return (
            isinstance(target, ast.Subscript)
            and isinstance(target.value, ast.Name)
            and target.value.id == "mapping"
            and isinstance(target.slice, ast.Name)
            and target.slice.id == key
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "copy"
            and not value.args
            and isinstance(value.func.value, ast.Subscript)
            and isinstance(value.func.value.value, ast.Name)
            and value.func.value.value.id == "mapping"
            and isinstance(value.func.value.slice, ast.Name)
            and value.func.value.slice.id == base
        )
    return False
