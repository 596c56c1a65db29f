"""The repository's line length, read from its formatter configuration.

Why: an entry is written the way the project's formatter would leave it, and the formatter
wraps at the configured length. Looked up from the edited file's folder upwards, first file
that sets it wins: `pyproject.toml` (`[tool.ruff] line-length`, then `[tool.black]`),
`ruff.toml` / `.ruff.toml` (`line-length`), `setup.cfg` / `tox.ini` / `.flake8`
(`[flake8] max-line-length`). Default 88 (ruff's and black's). Pure Python, no libcst.
"""

from __future__ import annotations

import configparser
from pathlib import Path

DEFAULT = 88


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _from_dir(directory: Path) -> int | None:
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        tool = _toml(pyproject).get("tool", {})
        for table in ("ruff", "black"):
            found = _int(tool.get(table, {}).get("line-length"))
            if found:
                return found
    for name in ("ruff.toml", ".ruff.toml"):
        if (directory / name).is_file():
            found = _int(_toml(directory / name).get("line-length"))
            if found:
                return found
    for name in ("setup.cfg", "tox.ini", ".flake8"):
        if not (directory / name).is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(directory / name, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError, OSError):
            continue
        found = _int(parser.get("flake8", "max-line-length", fallback=None))
        if found:
            return found
    return None


def line_length(path: str | Path | None) -> int:
    """The configured line length for a file at `path` (88 when nothing says otherwise)."""
    if path is None or str(path).startswith("<"):
        return DEFAULT
    start = Path(path).resolve().parent
    for directory in (start, *start.parents):
        found = _from_dir(directory)
        if found:
            return found
        if (directory / ".git").exists():
            break  # the repository root: nothing above it formats this file
    return DEFAULT
