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
        ("auto_mappings.py", "CONFIG_MAPPING_NAMES", "qwen3_tiny", "Qwen3TinyConfig"),
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


def update_block_line(source: str, name: str) -> int:
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and getattr(node.func.value, "id", None) == name
        ):
            return node.lineno
    raise AssertionError("no update block")


def test_the_discouraged_update_block_is_never_picked_silently(tmp_path, cli):
    """configuration_auto.py of 5.x only extends CONFIG_MAPPING_NAMES in an `.update({...})`
    block whose comment says new models must not go there: refused, unless picked by line."""
    path = copy(tmp_path, "configuration_auto.py")
    old = path.read_bytes()
    line = update_block_line(old.decode(), "CONFIG_MAPPING_NAMES")
    code, out, err = cli(
        "registry", "add", path, "CONFIG_MAPPING_NAMES", "qwen3_tiny", "Qwen3TinyConfig"
    )
    assert code == 2 and out == "" and path.read_bytes() == old
    assert f"configuration_auto.py:{line}: the only editable binding" in err
    assert "New models should follow consistent naming" in err
    assert f"'CONFIG_MAPPING_NAMES@{line}'" in err
    code, _, _ = cli(
        "registry", "add", path, f"CONFIG_MAPPING_NAMES@{line}", "qwen3_tiny", "Qwen3TinyConfig"
    )
    assert code == 0 and "qwen3_tiny" in path.read_text()


def test_the_main_binding_wins_over_an_update_block(tmp_path, cli):
    """A file with the main `OrderedDict([...])` and a discouraged `.update({...})` (the 4.x
    layout): the entry goes into the main binding."""
    path = tmp_path / "configuration_auto.py"
    path.write_text(
        "from collections import OrderedDict\n\n"
        "CONFIG_MAPPING_NAMES = OrderedDict(\n"
        "    [\n"
        '        ("llama", "LlamaConfig"),\n'
        '        ("qwen2", "Qwen2Config"),\n'
        "    ]\n"
        ")\n\n"
        "# Add non-standard models; new models should not be added here!\n"
        'CONFIG_MAPPING_NAMES.update({"mimi_decoder": "MimiDecoderConfig"})\n'
    )
    code, out, err = cli(
        "registry", "add", path, "CONFIG_MAPPING_NAMES", "mistral", "MistralConfig"
    )
    assert (code, err) == (0, "")
    lines = path.read_text().splitlines()
    assert lines[5] == '        ("mistral", "MistralConfig"),'
    assert lines[-1] == 'CONFIG_MAPPING_NAMES.update({"mimi_decoder": "MimiDecoderConfig"})'
