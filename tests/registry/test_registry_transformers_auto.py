"""The codemods on transformers' own auto-mapping files, copied from the installed package.

Real files are the best evidence that "every other byte is kept": thousands of lines of
entries, comments and trailing commas written by other tools.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import shutil
from pathlib import Path

import pytest

AUTO = Path(importlib.util.find_spec("transformers").submodule_search_locations[0]) / "models/auto"


def keys_of(source: str, name: str) -> list[str]:
    """Keys of `NAME = OrderedDict([...])` or `NAME.update({...})`, read with ast."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            call = node.value
            if isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.List):
                return [item.elts[0].value for item in call.args[0].elts]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and getattr(node.func.value, "id", None) == name
        ):
            return [key.value for key in node.args[0].keys]
    raise AssertionError(f"{name} not found")


def single_insertion(old: str, new: str) -> tuple[int, str]:
    """(0-based line index, text) of the one line `new` adds to `old`; fails otherwise."""
    matcher = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    changes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    assert len(changes) == 1, changes
    tag, i1, i2, j1, j2 = changes[0]
    assert tag == "insert" and j2 - j1 == 1, changes
    return j1, new.splitlines()[j1]


def copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copy(AUTO / name, target)
    return target


@pytest.mark.parametrize(
    ("file", "container", "key", "value"),
    [
        (
            "modeling_auto.py",
            "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
            "qwen3_tiny",
            "Qwen3TinyForCausalLM",
        ),
        ("configuration_auto.py", "CONFIG_MAPPING_NAMES", "qwen3_tiny", "Qwen3TinyConfig"),
    ],
)
def test_add_to_real_auto_mapping_inserts_one_sorted_line(
    tmp_path, cli, file, container, key, value
):
    path = copy(tmp_path, file)
    old = path.read_text()
    old_keys = keys_of(old, container)
    assert old_keys == sorted(old_keys) and key not in old_keys

    code, out, err = cli("registry", "add", path, container, key, value)
    assert (code, err) == (0, "")
    new = path.read_text()

    index, line = single_insertion(old, new)
    assert line.strip() in (f'("{key}", "{value}"),', f'"{key}": "{value}",')
    new_keys = keys_of(new, container)
    assert new_keys.count(key) == 1 and new_keys == sorted(new_keys)
    predecessor = new_keys[new_keys.index(key) - 1]
    assert f'"{predecessor}"' in new.splitlines()[index - 1]  # right after its sorted neighbour
    assert f":{index + 1}: added" in out
    compile(new, file, "exec")

    code, out, _ = cli("registry", "add", path, container, key, value)
    assert code == 0 and "already in" in out
    assert path.read_text() == new


def test_diff_on_real_file_writes_nothing(tmp_path, cli):
    path = copy(tmp_path, "modeling_auto.py")
    old = path.read_bytes()
    code, out, _ = cli(
        "registry", "add", path, "MODEL_MAPPING_NAMES", "qwen3_tiny", "Qwen3TinyModel", "--diff"
    )
    assert code == 0
    assert path.read_bytes() == old
    plus = [line for line in out.splitlines() if line.startswith("+") and line[:3] != "+++"]
    minus = [line for line in out.splitlines() if line.startswith("-") and line[:3] != "---"]
    assert plus == ['+        ("qwen3_tiny", "Qwen3TinyModel"),'] and minus == []


def test_unsorted_update_dict_appends_after_the_last_entry(tmp_path, cli):
    path = copy(tmp_path, "configuration_auto.py")
    old = path.read_text()
    container = "SPECIAL_MODEL_TYPE_TO_MODULE_NAME"
    assert keys_of(old, container) != sorted(keys_of(old, container))
    code, _, _ = cli("registry", "add", path, container, "qwen3_tiny_text", "qwen3_tiny")
    assert code == 0
    new = path.read_text()
    _, line = single_insertion(old, new)
    assert keys_of(new, container)[-1] == "qwen3_tiny_text"
    assert line == '        "qwen3_tiny_text": "qwen3_tiny",'
