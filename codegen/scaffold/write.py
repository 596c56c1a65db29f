"""Write a generated package into a models directory and register it, all or nothing.

Why this order: the registry edit is computed (and the registry checked writable) before
anything touches the disk, so a malformed or read-only registry costs nothing. The package is
then written into a hidden staging folder beside its final place and swapped in by rename (an
existing package is first renamed aside, never deleted), and only then is the registry
rewritten atomically. Any failure or interrupt after the swap puts the old package back (or
removes the new one), so the models directory is either exactly as before or fully updated.
All of it, from the existence check to the registry write, runs under an exclusive lock on the
models folder (`codegen.codemods.lock`), so scaffolds into one folder at once take turns and
none drops another's registry entry.
Folders are created with mode 0o777 and files 0o666, less the umask, like any other tool.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from codegen.codemods.add import add_entry
from codegen.codemods.files import check_writable, read_source, write_atomic
from codegen.codemods.lock import holding_folder, locked
from codegen.errors import CodegenError

REGISTRY = "MODEL_SPECS"
# a new registry starts with its first entry on its own line: the codemod copies that
# multi-line shape for every later entry
NEW_REGISTRY = '''"""Generated model packages: name -> "module:ATTRIBUTE" of each ModelSpec."""

MODEL_SPECS = {{
    "{name}": "{name}.spec:SPEC",
}}
'''


def install_package(models_dir: Path, name: str, files: dict[str, str], *, force: bool) -> Path:
    """Create (or with `force` replace) `models_dir/name/` from `files` and register it."""
    created = _make_models_dir(models_dir)
    try:
        # from the existence check to the registry write: concurrent scaffolds take turns
        with locked(models_dir, holding_folder(models_dir / "__init__.py")):
            return _install(models_dir, name, files, force=force)
    except BaseException:
        _remove_empty(created)
        raise


def _install(models_dir: Path, name: str, files: dict[str, str], *, force: bool) -> Path:
    target = models_dir / name
    if target.exists() and not force:
        raise CodegenError("package exists; pass --force to overwrite it", path=str(target))
    registry, old, new = registry_update(models_dir, name)
    exists = registry.exists()
    if exists and new != old:
        check_writable(registry)
    staging = _stage(models_dir, name, files)
    aside = _swap_in(staging, target)
    try:
        if new != old:
            _write_registry(registry, new, exists=exists)
    except BaseException:
        _swap_back(target, aside)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return target


def registry_update(models_dir: Path, name: str) -> tuple[Path, str, str]:
    """(registry path, old text, new text) for registering `name` in `models_dir`."""
    registry = models_dir / "__init__.py"
    if not registry.exists():
        return registry, "", NEW_REGISTRY.format(name=name)
    old = read_source(registry)
    outcome = add_entry(old, REGISTRY, name, [f"{name}.spec:SPEC"], path=str(registry))
    return registry, old, outcome.source


def _make_models_dir(models_dir: Path) -> list[Path]:
    """Create `models_dir` and missing parents; the folders this call made, outermost first."""
    missing: list[Path] = []
    for directory in (models_dir, *models_dir.parents):
        if directory.is_dir():
            break
        if directory.exists() or directory.is_symlink():
            if directory.is_dir():
                break  # a concurrent scaffold made it between the two looks
            what = "--out" if directory == models_dir else "a parent of --out"
            raise CodegenError(f"{what} is not a directory", path=str(directory))
        missing.append(directory)
    made: list[Path] = []
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except OSError as err:
            if isinstance(err, FileExistsError) and directory.is_dir():
                continue  # a concurrent scaffold made it just now: not ours to remove
            _remove_empty(made)
            raise _os_error(err, directory) from None
        made.append(directory)
    return made


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders `_make_models_dir` made, innermost first, while they are empty (a
    concurrent scaffold may have written into them since)."""
    for directory in reversed(made):
        try:
            directory.rmdir()
        except OSError:
            break


def _stage(models_dir: Path, name: str, files: dict[str, str]) -> Path:
    """The package written into a fresh hidden folder beside its final place."""
    staging = _unique(models_dir, f".{name}.new-")
    try:
        os.mkdir(staging)  # 0o777 less the umask (mkdtemp would force 0o700)
    except OSError as err:
        raise _os_error(err, models_dir) from None
    try:
        for filename, text in files.items():
            with open(staging / filename, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise _os_error(err, models_dir) from None
        raise
    return staging


def _swap_in(staging: Path, target: Path) -> Path | None:
    """Rename `staging` to `target`; an existing `target` is renamed aside first (returned)."""
    aside = None
    try:
        if target.exists() or target.is_symlink():
            aside = _unique(target.parent, f".{target.name}.old-")
            os.rename(target, aside)
        os.rename(staging, target)
    except BaseException as err:
        if aside is not None and not target.exists():
            os.rename(aside, target)
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise _os_error(err, target.parent) from None
        raise
    return aside


def _swap_back(target: Path, aside: Path | None) -> None:
    """Undo `_swap_in`: the new package is removed and the old one (if any) put back."""
    doomed = _unique(target.parent, f".{target.name}.failed-")
    os.rename(target, doomed)
    if aside is not None:
        os.rename(aside, target)
    shutil.rmtree(doomed, ignore_errors=True)


def _write_registry(registry: Path, text: str, *, exists: bool) -> None:
    try:
        if exists:
            write_atomic(registry, text)
            return
        fd, tmp = tempfile.mkstemp(dir=registry.parent, prefix=".__init__.py.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, registry)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as err:
        raise _os_error(err, registry) from None


def _unique(directory: Path, prefix: str) -> Path:
    while True:
        path = directory / f"{prefix}{secrets.token_hex(4)}"
        if not os.path.lexists(path):
            return path


def _umask() -> int:
    """The process umask (read by setting and restoring it; /proc when it says so)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _os_error(err: OSError, path: Path) -> CodegenError:
    reason = err.strerror or type(err).__name__
    return CodegenError(f"cannot write: {reason}; nothing changed", path=str(path))
