"""Tests for `lock`: folders locked exclusively, once each, in one order, nothing left behind.

flock locks belong to an open file description, so a second `os.open` of the same folder in
this process is a separate contender: the tests need no second process.
"""

import errno
import fcntl
import os
import threading

import pytest

from codegen.codemods import lock
from codegen.codemods.lock import holding_folder, locked
from codegen.errors import CodegenError


def is_locked(folder) -> bool:
    """Whether someone else holds `folder`'s lock (tried without waiting)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def in_thread(work, timeout=10.0) -> None:
    """Run `work` in a thread; fail (instead of hanging) when it does not finish."""
    errors = []

    def run():
        try:
            work()
        except BaseException as err:  # noqa: BLE001 - reported by the assert below
            errors.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "deadlocked"
    assert not errors, errors


def test_held_for_the_block_through_a_symlink_and_nothing_left_behind(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    with locked(tmp_path / "link"):
        assert is_locked(folder)
    assert not is_locked(folder)
    assert sorted(os.listdir(tmp_path)) == ["link", "models"]
    assert os.listdir(folder) == []


def test_a_folder_named_twice_is_locked_once(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path)

    def work():
        with locked(tmp_path, tmp_path / "link", tmp_path):
            assert is_locked(tmp_path)

    in_thread(work)


def test_overlapping_sets_in_opposite_orders_do_not_deadlock(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()

    def take(first, second):
        for _ in range(300):
            with locked(first, second):
                pass

    in_thread(lambda: [t.join() for t in start(take, (a, b), (b, a))], timeout=20)


def start(work, *argument_lists) -> list[threading.Thread]:
    threads = [threading.Thread(target=work, args=args, daemon=True) for args in argument_lists]
    for thread in threads:
        thread.start()
    return threads


def test_a_folder_replaced_while_waiting_is_locked_afresh(tmp_path, monkeypatch):
    """A scaffold that made the folder failed and removed it; another made it again."""
    folder = tmp_path / "models"
    folder.mkdir()
    holder = os.open(folder, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    waiting, entered, release = threading.Event(), threading.Event(), threading.Event()
    real_flock = fcntl.flock

    def flock(fd, operation):
        waiting.set()  # the waiter has opened the old folder and now waits for its lock
        return real_flock(fd, operation)

    monkeypatch.setattr(lock.fcntl, "flock", flock)

    def wait_for_lock():
        with locked(folder):
            entered.set()
            release.wait(10)

    waiter = threading.Thread(target=wait_for_lock, daemon=True)
    waiter.start()
    assert waiting.wait(10)
    folder.rename(tmp_path / "old")
    folder.mkdir()
    os.close(holder)  # the old folder's lock is free: the waiter gets it, then sees the swap
    assert entered.wait(10)
    assert is_locked(folder)  # the folder now at the path, not the old one
    assert not is_locked(tmp_path / "old")
    release.set()
    waiter.join(10)


def test_a_missing_folder_is_skipped(tmp_path):
    with locked(tmp_path / "absent", tmp_path):
        assert is_locked(tmp_path)


def test_a_filesystem_without_folder_locks_runs_unlocked(tmp_path, monkeypatch):
    def nfs(fd, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(lock.fcntl, "flock", nfs)
    ran = []
    with locked(tmp_path):
        ran.append(True)
    assert ran == [True]


def test_a_lock_that_fails_otherwise_is_one_line(tmp_path, monkeypatch):
    def broken(fd, operation):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(lock.fcntl, "flock", broken)
    with pytest.raises(CodegenError) as err:
        with locked(tmp_path):
            pytest.fail("ran without the lock")
    assert str(err.value) == f"{tmp_path}: cannot lock folder: Input/output error; nothing changed"


def test_holding_folder_follows_a_symlinked_file(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "registry.py").write_text("")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").symlink_to(tmp_path / "real" / "registry.py")
    real = os.path.realpath(tmp_path / "real")
    assert str(holding_folder(tmp_path / "models" / "__init__.py")) == real
    assert holding_folder(tmp_path / "models" / "new.py") == tmp_path / "models"
