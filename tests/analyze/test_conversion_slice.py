"""The sliced conversion function computes the wanted entries exactly as the whole one."""

from __future__ import annotations

import pytest

from codegen.analyze import conversion
from codegen.analyze.conversion_slice import sliced_source

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
