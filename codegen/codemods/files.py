"""Reading, parsing, diffing and atomically writing the files a codemod edits.

Why a module of its own: every codemod must fail the same way on bad input (one line naming
`file:line`, exit 2, file untouched) and must never leave a half-written registry behind, so
the read / parse / write steps live in one place instead of being re-done per codemod.

What a write keeps, and why:
- a UTF-8 byte-order mark: the codemods see the text without it (CPython's parser rejects
  U+FEFF inside a string), and the write puts it back when the file had one;
- a symbolic link: the edit goes through the link to the file it points at (the link stays
  a link), by the same temp-file-and-rename beside the target;
- hard links: renaming a new file over one name would detach it from the others, so a file
  with several links is rewritten in place instead, and only after the new text is complete;
  if that write fails, the old bytes are written back. (In-place is not atomic for readers,
  but it is the only way every name keeps seeing the same, new, file.)
"""

from __future__ import annotations

import ast
import difflib
import os
import stat
import tempfile
from pathlib import Path

import libcst as cst

from codegen.errors import CodegenError

BOM = "\ufeff"


def read_source(path: Path) -> str:
    """The text of `path`, exactly as stored (no newline translation)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CodegenError("no such file", path=str(path)) from None
    except OSError as err:
        raise CodegenError(f"cannot read file: {err.strerror}", path=str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CodegenError(f"not UTF-8 text ({err.reason})", path=str(path)) from None
    return text.removeprefix(BOM)


def parse(source: str, path: str) -> cst.Module:
    """Parse with libcst; a syntax error becomes a one-line `CodegenError` at its line."""
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as err:
        # CPython's own parser names the real line and says it better ("'{' was never
        # closed"); libcst's message is the fallback for syntax only it rejects.
        try:
            compile(source, path, "exec", ast.PyCF_ONLY_AST)
        except SyntaxError as py_err:
            raise CodegenError(
                f"syntax error: {py_err.msg}", path=path, line=py_err.lineno
            ) from None
        first = str(err.message).strip().splitlines()[0] if err.message else "invalid syntax"
        raise CodegenError(f"cannot parse: {first}", path=path, line=err.raw_line) from None


def check_writable(path: Path) -> None:
    """Refuse read-only files up front, even for root, so nothing is half-done later."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise CodegenError(f"cannot stat file: {err.strerror}", path=str(path)) from None
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
        raise CodegenError("file is not writable; nothing changed", path=str(path))


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, then `os.replace` it into place.

    Readers see either the old file or the new one, never a truncated mix; the file's
    permission bits and its BOM are kept; a symlink is followed (the link stays, its target
    changes); a hard-linked file is rewritten in place (see the module docstring).
    """
    check_writable(path)
    real = Path(os.path.realpath(path))
    info = real.stat()
    mode = stat.S_IMODE(info.st_mode)
    try:
        old = real.read_bytes()
    except OSError as err:
        raise CodegenError(f"cannot read file: {err.strerror}", path=str(path)) from None
    data = ((BOM if old.startswith(BOM.encode()) else "") + text).encode("utf-8")
    if info.st_nlink > 1:
        _write_in_place(real, data, old)
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
    except OSError as err:
        raise CodegenError(f"cannot write beside file: {err.strerror}", path=str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_in_place(real: Path, data: bytes, old: bytes) -> None:
    try:
        with open(real, "r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with open(real, "r+b") as handle:
            handle.write(old)
            handle.truncate()
        raise


def unified_diff(old: str, new: str, path: str) -> str:
    """A `git diff`-style unified diff of one file (a/ b/ prefixes for relative paths)."""
    absolute = os.path.isabs(path)
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=path if absolute else f"a/{path}",
        tofile=path if absolute else f"b/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def first_changed_line(old: str, new: str) -> int:
    """1-based number of the first line of `new` that differs from `old`."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for number, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), start=1):
        if a != b:
            return number
    return min(len(old_lines), len(new_lines)) + 1
