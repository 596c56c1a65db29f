"""Tests for `files`: one-line parse errors, atomic writes, diffs."""

import os
import stat

import pytest

from codegen.codemods.files import first_changed_line, parse, unified_diff, write_atomic
from codegen.errors import CodegenError


def test_syntax_error_names_the_real_line():
    with pytest.raises(CodegenError) as err:
        parse("x = 1\ny = {\n", "reg.py")
    message = str(err.value)
    assert message.startswith("reg.py:2: syntax error") and "\n" not in message


def test_atomic_write_replaces_content_keeps_mode_and_leaves_no_temp(tmp_path):
    path = tmp_path / "reg.py"
    path.write_text("old\n")
    path.chmod(0o640)
    write_atomic(path, "new\r\n")
    assert path.read_bytes() == b"new\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["reg.py"]


def test_read_only_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "reg.py"
    path.write_text("old\n")
    path.chmod(0o444)
    with pytest.raises(CodegenError, match="not writable"):
        write_atomic(path, "new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["reg.py"]


def test_diff_and_first_changed_line():
    old, new = "a\nb\n", "a\nx\nb\n"
    assert unified_diff(old, new, "f.py").splitlines()[:2] == ["--- a/f.py", "+++ b/f.py"]
    assert "+x" in unified_diff(old, new, "f.py")
    assert unified_diff(old, old, "f.py") == ""
    assert first_changed_line(old, new) == 2
