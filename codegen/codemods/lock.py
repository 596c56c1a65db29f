"""An exclusive advisory lock on folders, so concurrent writers never lose each other's edits.

Why: a writer reads a registry, adds its entry and renames the new text into place. Two at
once (`xargs -P2 codegen scaffold ... --out DIR`) both read the old text, and the second
rename drops the first one's entry. Each writer holds this lock from its read to its last
write, so they take turns.

Why the folder, not the file: the file is replaced by rename, so a lock on it would stay with
the old inode and not exclude a writer that opened the new one; the folder keeps its inode.
The folder is opened read-only and `flock`ed, so nothing is created: no lock file is left
behind, registered or shipped. Where the filesystem cannot lock a folder (NFS emulates
`flock` with byte-range locks, which need a file opened for writing), writers run unlocked,
as they did before this lock existed.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from codegen.errors import CodegenError

# flock errors meaning "this filesystem does not lock folders", not "something is wrong"
UNSUPPORTED = frozenset({errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP})


@contextmanager
def locked(*folders: Path) -> Iterator[None]:
    """Hold an exclusive lock on every folder in `folders` until the block ends.

    Symlinks are followed and a folder named twice is locked once. Folders are locked in one
    order (device, inode), so writers needing overlapping sets wait instead of deadlocking.
    A folder replaced while this waited (removed and made again) is locked afresh; one that
    does not exist is skipped (the caller's own read or write reports it).
    """
    while True:
        with ExitStack() as stack:
            held = _open_all(folders, stack)
            if all(_lock(path, fd) for path, fd in held):
                yield
                return


def holding_folder(file: Path) -> Path:
    """The folder whose entry a write to `file` replaces: that of its real path when it
    exists (`write_atomic` follows symlinks), else its own."""
    if os.path.exists(file):
        return Path(os.path.realpath(file)).parent
    return Path(file).parent


def _open_all(folders, stack: ExitStack) -> list[tuple[Path, int]]:
    """Each distinct folder opened read-only (closed by `stack`), in lock order."""
    by_identity: dict[tuple[int, int], tuple[Path, int]] = {}
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # nothing in it to protect: the caller's own read or write says so
        except OSError as err:
            raise _error(err, folder) from None
        stack.callback(os.close, fd)
        info = os.fstat(fd)
        by_identity.setdefault((info.st_dev, info.st_ino), (Path(folder), fd))
    return [by_identity[key] for key in sorted(by_identity)]


def _lock(path: Path, fd: int) -> bool:
    """Wait for the lock on `fd`; False when `path` no longer names that folder."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as err:
        if err.errno in UNSUPPORTED:
            return True
        raise _error(err, path) from None
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _error(err: OSError, path: Path) -> CodegenError:
    reason = err.strerror or type(err).__name__
    return CodegenError(f"cannot lock folder: {reason}; nothing changed", path=str(path))
