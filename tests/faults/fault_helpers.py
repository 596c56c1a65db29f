"""Fault injection for the writers: fail the k-th filesystem write step, snapshot trees.

Why by primitive: every writer (codemods' `write_atomic`, scaffold's staging and swap) is
built from the same few os calls, so counting those calls enumerates every point where a
crash, a full disk or a Ctrl-C can strike, without knowing each writer's internals. Only
the k-th call fails; later calls succeed, so the writer's own rollback runs as it would
after a transient fault or an interrupt. Deleting (unlink, rmdir) is cleanup, not a write
step, and is never failed.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from codegen.cli import main

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class Injector:
    """Counts write steps; raises `error` at step `fail_at` (0-based), once."""

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None):
        self.fail_at = fail_at
        self.error = error
        self.steps: list[str] = []
        self.fired = False

    def step(self, what: str) -> None:
        index = len(self.steps)
        self.steps.append(what)
        if index == self.fail_at:
            self.fired = True
            raise self.error


def _is_write_mode(mode) -> bool:
    return isinstance(mode, str) and any(c in mode for c in "wax+")


@contextmanager
def injected(injector: Injector):
    """Patch os.mkdir/rename/replace/chmod/fsync/open and the builtin open (write modes)."""
    real = {name: getattr(os, name) for name in ("mkdir", "rename", "replace", "chmod", "fsync")}
    real_os_open = os.open
    real_open = builtins.open

    def wrap(name):
        def call(*args, **kwargs):
            injector.step(f"os.{name} {args[0]}")
            return real[name](*args, **kwargs)

        return call

    def os_open(path, flags, *args, **kwargs):
        if flags & _WRITE_FLAGS:
            injector.step(f"os.open {path}")
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if _is_write_mode(mode):
            injector.step(f"open {file} {mode}")
        return real_open(file, mode, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for name in real:
            patch.setattr(os, name, wrap(name))
        patch.setattr(os, "open", os_open)
        patch.setattr(builtins, "open", open_)
        patch.setattr(io, "open", open_)
        yield injector


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file (bytes, mode), folder (mode) and link under `root`, hidden ones included."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        mode = path.lstat().st_mode & 0o7777
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", mode)
        else:
            out[rel] = ("file", path.read_bytes(), mode)
    return out


def run_cli(args: list[str]) -> tuple[int | None, BaseException | None]:
    """`codegen ARGS` in process: (exit code, None) or (None, the exception that escaped)."""
    try:
        return main([str(a) for a in args]), None
    except SystemExit as stop:
        return (stop.code if isinstance(stop.code, int) else 1), None
    except BaseException as err:  # noqa: BLE001 - the test decides what may escape
        return None, err


FAULTS = {
    "EIO": lambda: OSError(errno.EIO, "Input/output error"),
    "ENOSPC": lambda: OSError(errno.ENOSPC, "No space left on device"),
    "EACCES": lambda: PermissionError(errno.EACCES, "Permission denied"),
    "interrupt": lambda: KeyboardInterrupt(),
}
