"""The checks the coverage sweep runs on every package it writes: ruff lint, ruff format
and the dead-code rules, with the ruff binary the `ruff` package ships (PATH not needed).

`HOUSE_LINT` is the project's own ruff selection (pyproject's `[tool.ruff]`), spelled out
so the check means the same from a wheel or a temp folder with no config around it.
`path_without_ruff` is the PATH a sweep scaffolds under, proving formatting never depends
on PATH.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from codegen.quality.check import check_package
from codegen.scaffold.tidy import ruff_binary

HOUSE_LINT = (
    "--isolated",
    "--line-length",
    "100",
    "--target-version",
    "py310",
    "--select",
    "E,F,I,UP,B",
    "--config",
    "lint.isort.known-first-party = ['codegen']",
)
HOUSE_FORMAT = ("--isolated", "--line-length", "100")


def path_without_ruff(path: str) -> str:
    """PATH minus every folder that holds a `ruff` executable."""
    kept = [
        folder
        for folder in path.split(os.pathsep)
        if folder and not os.access(os.path.join(folder, "ruff"), os.X_OK)
    ]
    return os.pathsep.join(kept)


def package_checks(directory: Path) -> dict[str, list[str]]:
    """{check: findings} for `ruff_check`, `ruff_format` (files it would reformat) and
    `dead_code`; every list is empty for a clean package."""
    ruff = ruff_binary()
    lint = subprocess.run(
        [ruff, "check", *HOUSE_LINT, "--output-format", "concise", "--quiet", str(directory)],
        capture_output=True,
        text=True,
    )
    fmt = subprocess.run(
        [ruff, "format", *HOUSE_FORMAT, "--check", "--quiet", str(directory)],
        capture_output=True,
        text=True,
    )
    return {
        "ruff_check": _lines(lint, directory),
        "ruff_format": _lines(fmt, directory),
        "dead_code": [finding.render() for finding in check_package(directory)],
    }


def _lines(done: subprocess.CompletedProcess, directory: Path) -> list[str]:
    if done.returncode == 0:
        return []
    text = (done.stdout + done.stderr).replace(str(directory.parent) + os.sep, "")
    return [line for line in text.splitlines() if line.strip()] or [f"exit {done.returncode}"]


def summary(rows: list[dict]) -> str:
    """One line: how many written packages pass each check, and which fail."""
    checked = [r for r in rows if r.get("checks") is not None]
    parts = []
    for check in ("ruff_check", "ruff_format", "dead_code"):
        failing = sorted(r["model_type"] for r in checked if r["checks"][check])
        part = f"{check.replace('_', ' ')} {len(checked) - len(failing)}/{len(checked)}"
        parts.append(part + (f" (fails: {', '.join(failing)})" if failing else ""))
    return "package checks (ruff not on PATH): " + "; ".join(parts)
