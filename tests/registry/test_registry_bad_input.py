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


ADDED = '    "qwen2": "qwen2.spec:SPEC",\n'


def test_a_symlink_is_edited_through_and_stays_a_link(tmp_path, cli):
    real = tmp_path / "real" / "reg.py"
    real.parent.mkdir()
    real.write_text(GOOD)
    link = tmp_path / "reg.py"
    link.symlink_to(real)
    code, out, err = cli(
        "registry", "add", "reg.py", "SPECS", "qwen2", "qwen2.spec:SPEC", cwd=tmp_path
    )
    assert (code, err) == (0, "")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert ADDED in real.read_text()
    assert sorted(os.listdir(real.parent)) == ["reg.py"]  # no temp file left beside the target


def test_hard_links_keep_sharing_the_new_text(tmp_path, cli):
    path = tmp_path / "reg.py"
    path.write_text(GOOD)
    other = tmp_path / "other.py"
    os.link(path, other)
    inode = path.stat().st_ino
    code, _, err = cli(
        "registry", "add", "reg.py", "SPECS", "qwen2", "qwen2.spec:SPEC", cwd=tmp_path
    )
    assert (code, err) == (0, "")
    assert path.stat().st_ino == inode and path.stat().st_nlink == 2
    assert other.read_text() == path.read_text() and ADDED in other.read_text()


def test_a_byte_order_mark_is_kept_and_the_file_edited(tmp_path, cli):
    path = tmp_path / "reg.py"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    code, out, err = cli(
        "registry", "add", "reg.py", "SPECS", "qwen2", "qwen2.spec:SPEC", cwd=tmp_path
    )
    assert (code, err) == (0, ""), err
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\xef\xbb\xbf") == 1
    assert ADDED.replace("\n", "\r\n").encode() in data
    code, out, _ = cli(
        "registry", "add", "reg.py", "SPECS", "qwen2", "qwen2.spec:SPEC", cwd=tmp_path
    )
    assert code == 0 and "already in" in out


def test_a_one_entry_container_counts_as_sorted(tmp_path, cli):
    path = tmp_path / "reg.py"
    path.write_text('SPECS = {\n    "qwen3": "qwen3.spec:SPEC",\n}\n')
    code, out, _ = cli(
        "registry", "add", "reg.py", "SPECS", "llama", "llama.spec:SPEC", cwd=tmp_path
    )
    assert code == 0 and "(sorted position)" in out
    assert path.read_text().index('"llama"') < path.read_text().index('"qwen3"')
