"""The sliced conversion function computes the wanted entries exactly as the whole one."""

from __future__ import annotations

import pytest

from codegen.analyze import conversion
from codegen.analyze.conversion_slice import _hollow, sliced_source

SOURCE = """
from .loading import Rename

TABLE = {"c": "a", "b": "z"}


def helper():
    return 1


def _build_checkpoint_conversion_mapping():
    mapping = {
        "a": [Rename("a1")],
        "b": [Rename("b1")],  # a comment
        "z": [Rename("z1")],
        "y": [Rename("y1")],
    }
    extra = [Rename("x")]
    mapping["d"] = mapping["b"]
    mapping["b"] += [Rename("b2")]
    mapping["e"] = mapping["y"].copy() + extra
    mapping["y"].append(Rename("y2"))
    for model_type, base_pattern in TABLE.items():
        if model_type in mapping:
            continue
        mapping[model_type] = mapping[base_pattern].copy()
    return mapping
"""


def _run(source: str) -> dict:
    scope = {"Rename": lambda name: name}
    body = source.replace("from .loading import Rename\n", "")
    exec(compile(body, "<conversion>", "exec"), scope)
    return scope["_build_checkpoint_conversion_mapping"]()


@pytest.mark.parametrize("key", ["a", "b", "c", "d", "e", "y", "z", "nowhere"])
def test_a_slice_builds_the_entry_as_the_whole_function(key):
    sliced = sliced_source(SOURCE, {key})
    assert sliced is not None
    assert _run(sliced).get(key) == _run(SOURCE).get(key)


def test_a_slice_leaves_out_what_the_key_does_not_need():
    sliced = sliced_source(SOURCE, {"d"})
    assert '"b1"' in sliced and '"b2"' in sliced  # the alias sees the in-place edit
    assert '"y1"' not in sliced and 'mapping["e"]' not in sliced
    assert "def helper" not in sliced


@pytest.mark.parametrize(
    "statement",
    ["mapping.update(other)", "del mapping[key]", "for k in keys:\n        mapping[k] = []"],
)
def test_another_shape_is_not_sliced(statement):
    source = SOURCE.replace("    return mapping", f"    {statement}\n    return mapping")
    assert sliced_source(source, {"a"}) is None


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, conversion.CallRec):
        return a.name == b.name and _same(a.args, b.args) and _same(a.kwargs, b.kwargs)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def test_installed_mapping_entries_match_the_whole_interpretation():
    if conversion._mapping_path() is None:
        pytest.skip("transformers has no conversion_mapping.py")
    whole = conversion._mapping()
    for key in ["deepseek_v3", "qwen3_moe", "mixtral", "gpt_oss", "qwen2_moe", "esm"]:
        if key not in whole:
            continue
        part = conversion._mapping(frozenset([key]))
        assert set(part) == {key}
        assert _same(part[key], whole[key]), key


def test_a_pattern_table_keeps_the_rows_of_needed_keys_only():
    sliced = sliced_source(SOURCE, {"c"})
    assert '"c": "a"' in sliced and '"b": "z"' not in sliced  # the loop's only use
    shared = SOURCE.replace("    return mapping", "    mapping['t'] = [TABLE]\n    return mapping")
    kept = sliced_source(shared, {"c"})
    assert '"c": "a"' in kept and '"b": "z"' in kept  # read elsewhere: the table stays whole


def test_the_dict_is_split_by_entry_lines_and_other_layouts_parse_whole():
    short, entries = _hollow(SOURCE)
    assert [key for key, _ in entries] == ["a", "b", "z", "y"]
    assert '"b1"' not in short and "extra = [Rename" in short
    quoted = SOURCE.replace('        "y": [Rename("y1")],\n', "        'y': [Rename('y1')],\n")
    assert _hollow(quoted) is None  # an entry line that is not `"key": ...`
    for key in ("y", "e"):
        assert _run(sliced_source(quoted, {key})).get(key) == _run(quoted).get(key) is not None
