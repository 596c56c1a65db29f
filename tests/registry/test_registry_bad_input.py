"""Bad input: one line on stderr naming file:line, exit 2, and the file left untouched."""

from __future__ import annotations

import os
import re

import pytest

GOOD = 'SPECS = {\n    "llama": "llama.spec:SPEC",\n}\n'

CASES = {
    "syntax error": (
        'SPECS = {\n    "llama": "llama.spec:SPEC",\n\nx = (\n',
        "SPECS",
        r"reg\.py:4: syntax error: \S",  # CPython's wording, at the line it names
    ),
    "container not found": (GOOD, "MODELS", r"reg\.py: container 'MODELS' not found"),
    "ambiguous container": (
        GOOD + "if FAST:\n    SPECS = {}\n",
        "SPECS",
        r"reg\.py:1: ambiguous container 'SPECS': bound at lines 1, 5; pick one with 'SPECS@LINE'",
    ),
    "not a container": (
        "SPECS = load_specs()\n",
        "SPECS",
        r"reg\.py:1: 'SPECS' is bound here to an expression codegen cannot edit",
    ),
    "conflicting duplicate": (
        GOOD,
        "SPECS",
        r"reg\.py:2: duplicate key 'llama': SPECS already maps it to 'llama\.spec:SPEC'",
        ["llama", "other.spec:SPEC"],
    ),
}


def snapshot(path):
    stat = path.stat()
    return path.read_bytes(), stat.st_mtime_ns, sorted(os.listdir(path.parent))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_file_untouched(tmp_path, cli, case):
    source, container, expected, *rest = CASES[case]
    key_values = rest[0] if rest else ["qwen2", "qwen2.spec:SPEC"]
    path = tmp_path / "reg.py"
    path.write_text(source)
    before = snapshot(path)
    code, out, err = cli("registry", "add", "reg.py", container, *key_values, cwd=tmp_path)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert re.match(r"codegen: error: " + expected, err), err
    assert snapshot(path) == before


def test_unwritable_file_is_refused_untouched(tmp_path, cli):
    path = tmp_path / "reg.py"
    path.write_text(GOOD)
    path.chmod(0o444)
    before = snapshot(path)
    code, out, err = cli(
        "registry", "add", "reg.py", "SPECS", "qwen2", "qwen2.spec:SPEC", cwd=tmp_path
    )
    assert code == 2 and out == ""
    assert err == "codegen: error: reg.py: file is not writable; nothing changed\n"
    assert snapshot(path) == before


def test_missing_file_and_bad_selector(tmp_path, cli):
    code, _, err = cli("registry", "add", "nope.py", "SPECS", "k", cwd=tmp_path)
    assert code == 2 and err == "codegen: error: nope.py: no such file\n"
    (tmp_path / "reg.py").write_text(GOOD)
    code, _, err = cli("registry", "add", "reg.py", "a.b.c", "k", cwd=tmp_path)
    assert code == 2 and err.startswith("codegen: error: bad container 'a.b.c'")


def test_no_traceback_from_a_real_process(tmp_path, subprocess_cli):
    (tmp_path / "reg.py").write_text("SPECS = {\n")
    result = subprocess_cli("registry", "add", "reg.py", "SPECS", "k", "v", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("codegen: error: reg.py:1: syntax error")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
