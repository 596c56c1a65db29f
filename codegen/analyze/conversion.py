"""transformers' checkpoint conversions (`conversion_mapping.py`), read statically.

`_build_checkpoint_conversion_mapping()` is interpreted (never imported): `WeightRenaming(...)`
and `WeightConverter(...)` calls become inert records, so the on-disk key pattern of an
installed model type (per-expert `experts.{}.gate_proj.weight` merged into a fused
`experts.gate_up_proj` at load time) can be derived from the module keys.

transformers applies these only to its own model classes (it skips custom code), so a
remote-code or renamed modeling file gets no conversion.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import libcst as cst

from codegen.analyze.conversion_slice import sliced_source
from codegen.analyze.evaluate import CallRec, Frame, Interp, Unknown
from codegen.analyze.source import Project, transformers_dir

_META = set("[]()*+?|{}$^\\")


def _mapping_path() -> str | None:
    tdir = transformers_dir()
    if tdir is None:
        return None
    path = os.path.join(tdir, "conversion_mapping.py")
    return path if os.path.isfile(path) else None


@lru_cache(maxsize=1)
def _mapping_text() -> str:
    path = _mapping_path()
    if path is None:
        return ""
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def cite(name: str, modeling: str | None = None) -> str:
    """`conversion_mapping.py:LINE` of the first place `name` is keyed (with `modeling`:
    that file's, where it registers conversions of its own)."""
    if modeling is None:
        text, file = _mapping_text(), "conversion_mapping.py"
    else:
        with open(modeling, encoding="utf-8") as fh:
            text, file = fh.read(), os.path.basename(modeling)
    index = text.find(f'"{name}"')
    line = text.count("\n", 0, index) + 1 if index >= 0 else 0
    return f"{file}:{line}"


def mentions(name: str) -> bool:
    """Cheap check before parsing: is `name` a quoted key anywhere in the file?"""
    return f'"{name}"' in _mapping_text()


@lru_cache(maxsize=8)
def _mapping(names: frozenset[str] | None = None) -> dict:
    """The interpreted mapping: every entry, or (`names`) at least those entries, computed
    from the slice of the function they depend on (`conversion_slice`)."""
    path = _mapping_path()
    if path is None:
        return {}
    project = Project()
    sliced = sliced_source(_mapping_text(), set(names)) if names is not None else None
    if sliced is None:
        sf = project.load(path, positions=False)
    else:
        sf = project.adopt(path, sliced)
    fn = sf.functions.get("_build_checkpoint_conversion_mapping")
    if fn is None:
        return {}
    interp = Interp(project)
    interp.max_steps = 2_000_000
    from codegen.analyze.evaluate import FuncRef

    try:
        result = interp.call_function(FuncRef(sf, fn), [], {})
    except Unknown:
        return {}
    _ = Frame
    if not isinstance(result, dict):
        return {}
    return result if names is None else {k: v for k, v in result.items() if k in names}


def conversions_for(names: list[str]) -> tuple[str | None, list[CallRec]]:
    """(key found, transforms) for the first of `names` (class names, then model_type)."""
    mentioned = frozenset(name for name in names if name and mentions(name))
    for name in names:
        if name in mentioned:
            table = _mapping(mentioned)
            if name in table and isinstance(table[name], list):
                return name, [c for c in table[name] if isinstance(c, CallRec)]
    return None, []


_REGISTER = "register_checkpoint_conversion_mapping"


def registered(modeling: str | None, names: list[str]) -> tuple[str | None, list[CallRec]]:
    """(key, transforms) of the first of `names` a modeling file registers conversions for
    itself, at module level (`register_checkpoint_conversion_mapping("name", [...])`: the
    one way transformers converts the checkpoint of remote code), interpreted statically
    like the installed mapping; (None, []) where it registers none."""
    if not modeling or not os.path.isfile(modeling):
        return None, []
    with open(modeling, encoding="utf-8") as fh:
        if _REGISTER not in fh.read():
            return None, []
    project = Project()
    sf = project.load(modeling, positions=False)
    interp = Interp(project)
    table: dict[str, list[CallRec]] = {}
    for statement in sf.module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        first = statement.body[0]
        call = first.value if isinstance(first, cst.Expr) else None
        if not isinstance(call, cst.Call) or len(call.args) < 2:
            continue
        func = call.func
        called = func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", "")
        if called != _REGISTER:
            continue
        frame = Frame(sf, scope=statement)
        try:
            key, transforms = (interp.eval(arg.value, frame) for arg in call.args[:2])
        except Unknown:
            continue
        if isinstance(key, str) and isinstance(transforms, list):
            table[key] = [c for c in transforms if isinstance(c, CallRec)]
    for name in names:
        if name in table:
            return name, table[name]
    return None, []


def _patterns(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _literal(pattern: str) -> str | None:
    """A regex that only escapes dots (and anchors) as a literal string; None otherwise."""
    text = pattern.lstrip("^").rstrip("$").replace(r"\.", ".")
    if any(ch in _META for ch in text.replace("*", "")):
        return None
    return text


def _args(call: CallRec, index: int, key: str):
    if len(call.args) > index:
        return call.args[index]
    return call.kwargs.get(key)


def chunk_split(call: CallRec) -> tuple[str, tuple[str, ...]] | None:
    """(on-disk name, module names) of a converter that splits one checkpoint tensor into
    equal row blocks (`operations=[Chunk(dim=0)]`: hrm_text's fused `attn.gqkv_proj` ->
    gate, q, k, v); None for any other transform. The names are key tails, as
    transformers matches them."""
    if call.name.rsplit(".", 1)[-1] != "WeightConverter":
        return None
    sources = _patterns(_args(call, 0, "source_patterns"))
    targets = _patterns(_args(call, 1, "target_patterns"))
    operations = _args(call, 2, "operations")
    if len(sources) != 1 or len(targets) < 2 or not isinstance(operations, list | tuple):
        return None
    if len(operations) != 1 or not isinstance(operations[0], CallRec):
        return None
    op = operations[0]
    dim = op.args[0] if op.args else op.kwargs.get("dim", 0)
    if (
        op.name.rsplit(".", 1)[-1] != "Chunk"
        or dim != 0
        or len(op.args) > 1
        or set(op.kwargs) - {"dim"}
    ):
        return None
    names = [_literal(p) for p in (*sources, *targets)]
    if any(n is None or "*" in n for n in names):
        return None
    return names[0], tuple(names[1:])


def chunk_splits(transforms: list[CallRec]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every `chunk_split` among `transforms`, in their order."""
    return tuple(found for call in transforms if (found := chunk_split(call)) is not None)


def to_checkpoint(keys: list[str], transforms: list[CallRec]) -> tuple[list[str], list[str]]:
    """Module keys -> on-disk keys (reversing the load-time transforms); also notes. A
    `chunk_split` leaves the module keys: the adapter splits the fused tensor into them."""
    notes: list[str] = []
    out = list(keys)
    for call in reversed(transforms):
        kind = call.name.rsplit(".", 1)[-1]
        if chunk_split(call) is not None:
            continue
        sources = _patterns(_args(call, 0, "source_patterns"))
        targets = _patterns(_args(call, 1, "target_patterns"))
        if kind == "WeightRenaming" and len(sources) == 1 and len(targets) == 1:
            src, tgt = _literal(sources[0]), _literal(targets[0])
            if src is None or tgt is None or "*" in src or "*" in tgt:
                reverse = _reversed_regex(sources[0], targets[0])
                if reverse is None:
                    notes.append(
                        f"checkpoint: renaming {sources[0]!r} -> {targets[0]!r} not applied (regex)"
                    )
                    continue
                out = [reverse(k) for k in out]
                continue
            out = [_renamed_back(k, sources[0], src, tgt) for k in out]
        elif (shift := _index_offset(call, sources, targets)) is not None:
            reverse = _reversed_regex(sources[0], targets[0], shift=-shift)
            if reverse is None:
                notes.append(f"checkpoint: {kind} transform not applied")
                continue
            out = [reverse(k) for k in out]
        elif kind == "WeightConverter" and len(targets) == 1 and sources:
            tgt = _literal(targets[0])
            srcs = [_literal(s) for s in sources]
            if tgt is None or any(s is None for s in srcs):
                notes.append(f"checkpoint: conversion to {targets[0]!r} not applied (regex)")
                continue
            converted = []
            for k in out:
                match = _match(k, tgt)
                if match is None:
                    converted.append(k)
                    continue
                head, tail = match
                for s in srcs:
                    converted.append(head + s.lstrip(".").replace("*", "{}") + tail)
            out = converted
        else:
            notes.append(f"checkpoint: {kind} transform not applied")
    seen: set = set()
    unique = [k for k in out if not (k in seen or seen.add(k))]
    return unique, notes


def _renamed_back(key: str, source: str, src: str, tgt: str) -> str:
    """`key` with the literal renaming `src -> tgt` undone at its first match, as
    transformers reverses it to save; a source anchored with `^` (`$`) matches only at the
    start (end) of the whole key: DeepSeek-V4's `^embed\\.weight` -> `embed_tokens.weight`
    leaves `model.embed_tokens.weight` as it is, and renames a top-level `lm_head.weight`."""
    if source.startswith("^"):
        return src + key[len(tgt) :] if key.startswith(tgt) else key
    if source.endswith("$") and not source.endswith("\\$"):
        return key[: -len(tgt)] + src if key.endswith(tgt) else key
    return key.replace(tgt, src, 1)


# a group of digits (a layer index) in a pattern also matches a key template's `{}`
_INDEX = (r"\d+", r"(?:\d+|\{\})")


def _index_offset(call: CallRec, sources: list[str], targets: list[str]) -> int | None:
    """The offset of a renaming that also shifts the index its source captures
    (transformers' `Inkling2IndexOffsetWeightRename(source, target, offset=1)`: stored
    `attn_queries.{i}` is `layers.{i + 1}`): one source, one target reading its group, an
    int `offset`; None for any other transform."""
    offset = call.kwargs.get("offset")
    if not isinstance(offset, int) or isinstance(offset, bool) or not offset:
        return None
    if len(sources) != 1 or len(targets) != 1 or "\\1" not in targets[0]:
        return None
    return offset


def _reversed_regex(source: str, target: str, shift: int = 0):
    """The key rewrite that undoes `WeightRenaming(source, target)`, as transformers reverses
    it to save: the target (its `\\1` the source's first group) is searched in the module key
    and becomes the source (its group `\\1`, escaped dots plain). None where the source has
    another construct than one group, escaped dots and `^` (a lookahead, a class, several
    groups). `shift`: the captured index is stored shifted by this much (a key template's
    `{}` becomes `{-1}`, the adapter table's shifted layer index)."""
    body = re.sub(r"\(\?<?[!=][^()]*\)", "", source.removeprefix("^"))  # lookarounds
    groups = re.findall(r"\((?!\?)[^()]*\)", body)
    if len(groups) > 1 or re.search(r"\(\?", body):
        return None
    group = groups[0] if groups else None
    outside = body.replace(group, "", 1) if group else body
    if any(ch in _META for ch in outside.replace("\\.", "")):
        return None
    replacement = (body.replace(group, "\x00", 1) if group else body).replace("\\.", ".")
    if "\\1" in target and group is None:
        return None
    searched = target.replace("\\1", group, 1) if group else target
    if source.startswith("^"):
        searched = "^" + searched
    if re.search(r"[a-zA-Z0-9]$", searched):
        searched += r"(?!\w)"
    try:
        pattern = re.compile(searched.replace(*_INDEX))
    except re.error:
        return None

    def rewrite(key: str) -> str:
        found = pattern.search(key)
        if found is None:
            return key
        captured = found.group(1) if group else ""
        if shift:
            captured = f"{{{shift:+d}}}" if captured == "{}" else str(int(captured) + shift)
        return key.replace(found.group(0), replacement.replace("\x00", captured), 1)

    return rewrite


# operations that reorder a stored tensor's contents on load (Inkling-2's `Interleave(dim=1)`
# of its experts' gate and up rows, `PermuteForRope`): the adapter table maps names, so a
# package loading such a tensor as stored would be a different model, unless the adapter
# realises the reordering (`interleave`)
_REORDERING = frozenset({"Interleave", "PermuteForRope"})


def interleave(call: CallRec) -> tuple[str, str, int] | None:
    """(on-disk name, module name, dim) of a converter whose one operation de-interleaves
    the stored tensor along `dim` on load (`WeightConverter("mlp.experts.w13_weight",
    "mlp.experts.gate_up_proj", operations=[Interleave(dim=1)])`: rows gate0, up0, gate1,
    up1... become gate0, gate1..., up0, up1...); None for any other transform. The names
    are key tails, as transformers matches them."""
    if call.name.rsplit(".", 1)[-1] != "WeightConverter":
        return None
    sources = _patterns(_args(call, 0, "source_patterns"))
    targets = _patterns(_args(call, 1, "target_patterns"))
    operations = _args(call, 2, "operations")
    if len(sources) != 1 or len(targets) != 1 or not isinstance(operations, list | tuple):
        return None
    if len(operations) != 1 or not isinstance(operations[0], CallRec):
        return None
    op = operations[0]
    dim = op.args[0] if op.args else op.kwargs.get("dim", 0)
    inverse = op.args[1] if len(op.args) > 1 else op.kwargs.get("inverse", False)
    if (
        op.name.rsplit(".", 1)[-1] != "Interleave"
        or not isinstance(dim, int)
        or isinstance(dim, bool)
        or inverse is not False
        or len(op.args) > 2
        or set(op.kwargs) - {"dim", "inverse"}
    ):
        return None
    names = [_literal(p) for p in (*sources, *targets)]
    if any(n is None or "*" in n for n in names):
        return None
    return names[0], names[1], dim


def interleaves(keys: list[str], transforms: list[CallRec]) -> tuple[tuple[str, int], ...]:
    """(on-disk name, dim) of every `interleave` among `transforms` that loads one of the
    module `keys`, in their order."""
    return tuple(
        (found[0], found[2])
        for call in transforms
        if (found := interleave(call)) is not None and any(_match(k, found[1]) for k in keys)
    )


def _reordering(call: CallRec) -> str | None:
    """The name of the first `_REORDERING` operation a converter applies; None otherwise."""
    operations = _args(call, 2, "operations")
    for op in operations if isinstance(operations, list | tuple) else ():
        if isinstance(op, CallRec) and (name := op.name.rsplit(".", 1)[-1]) in _REORDERING:
            return name
    return None


def unreversed(keys: list[str], transforms: list[CallRec]) -> list[str]:
    """The transforms `to_checkpoint` does not reverse that would rename one of the module
    `keys` on load (an index offset, a regex it cannot read), or reorder one's contents (a
    `_REORDERING` operation): described, one each."""
    found = []
    for call in transforms:
        kind = call.name.rsplit(".", 1)[-1]
        if interleave(call) is not None:
            continue  # the adapter de-interleaves on load (`interleaves`)
        if kind == "WeightConverter" and (op := _reordering(call)) is not None:
            sources = _patterns(_args(call, 0, "source_patterns"))
            targets = [t for t in map(_literal, _patterns(_args(call, 1, "target_patterns"))) if t]
            if any(_match(k, t) for k in keys for t in targets):
                found.append(f"{kind} ({sources[0]!r} -> {targets[0]!r}: {op}, contents reordered)")
            continue
        if kind in ("WeightRenaming", "WeightConverter") or chunk_split(call) is not None:
            continue
        sources = _patterns(_args(call, 0, "source_patterns"))
        targets = _patterns(_args(call, 1, "target_patterns"))
        shift = _index_offset(call, sources, targets)
        if shift is not None and _reversed_regex(sources[0], targets[0], -shift) is not None:
            continue  # reversed by to_checkpoint
        if len(sources) != 1 or len(targets) != 1:
            continue
        rewrite = _reversed_regex(sources[0], targets[0])
        if rewrite is None or any(rewrite(k) != k for k in keys):
            found.append(f"{kind} ({sources[0]!r} -> {targets[0]!r})")
    return found


def _match(key: str, target: str):
    target = target.lstrip(".")
    regex = re.escape(target).replace(r"\*", r"[^.]+")
    m = re.search(r"(^|\.)" + regex + r"($|\.)", key)
    if m is None:
        return None
    start = m.start() + len(m.group(1))
    end = m.end() - len(m.group(2))
    return key[:start], key[end:]


def analysed(features) -> list[CallRec]:
    """The load-time conversions of the analysed target's checkpoint, read as the analysis
    reads them (`state_dict`): transformers' mapping for its model_type where the modeling
    file is the installed one, else the file's own module-level
    `register_checkpoint_conversion_mapping(...)` (the one way remote code gets one), under
    its model class or model_type; [] where there is none."""
    model_type = getattr(features, "model_type", None)
    modeling = getattr(getattr(features, "source", None), "modeling", "")
    if modeling:
        from codegen.analyze.locate import is_installed

        if not is_installed(modeling):
            classes = (features.source.model_class, *getattr(features, "architectures", ()))
            names = [*classes, model_type]
            return registered(modeling, [name for name in names if name])[1]
    return conversions_for([model_type])[1] if model_type else []


def on_disk(conversions: list[CallRec], key: str) -> str:
    """The checkpoint's name of the module key `key` (`{}` placeholders allowed), as
    `conversions` (`analysed`) rename it on load; `key` itself where there is none."""
    if not conversions:
        return key
    found, _ = to_checkpoint([key], conversions)
    return found[0] if len(found) == 1 else key
