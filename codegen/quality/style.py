"""The checks the coverage sweep runs on every package it writes: ruff lint, ruff format,
the dead-code rules, parameters nothing reads (`unused_arguments`: ruff's ARG less the
interface table) and, given the target's configuration file, the prose check (no comment
or docstring names a reference or an HF config field the target lacks), with the ruff
binary the `ruff` package ships (PATH not needed).

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
from codegen.quality.unused_arguments import unused_arguments
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


def package_checks(
    directory: Path, configuration: str | None = None, own: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    """{check: findings} for `ruff_check`, `ruff_format` (files it would reformat),
    `dead_code`, `unused_arguments` and, with the target's `configuration` file (`own`: its
    model types), `prose`; every list is empty for a clean package."""
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
    checks = {
        "ruff_check": _lines(lint, directory),
        "ruff_format": _lines(fmt, directory),
        "dead_code": [finding.render() for finding in check_package(directory)],
        "unused_arguments": unused_arguments(directory),
    }
    if configuration is not None:
        from codegen.analyze.reference import ORDER
        from codegen.quality.prose import foreign_mentions

        files = {
            path.name: path.read_text()
            for path in sorted(directory.glob("*.py"))
            if not path.name.startswith("test_")
        }
        found = foreign_mentions(files, directory.name, configuration, list(ORDER), own)
        checks["prose"] = [f"{directory.name}/{line}" for line in found]
    return checks


def _lines(done: subprocess.CompletedProcess, directory: Path) -> list[str]:
    if done.returncode == 0:
        return []
    text = (done.stdout + done.stderr).replace(str(directory.parent) + os.sep, "")
    return [line for line in text.splitlines() if line.strip()] or [f"exit {done.returncode}"]


def summary(rows: list[dict]) -> str:
    """One line: how many written packages pass each check, and which fail."""
    checked = [r for r in rows if r.get("checks") is not None]
    parts = []
    for check in ("ruff_check", "ruff_format", "dead_code", "unused_arguments", "prose"):
        if not any(check in r["checks"] for r in checked):
            continue
        failing = sorted(r["model_type"] for r in checked if r["checks"].get(check))
        part = f"{check.replace('_', ' ')} {len(checked) - len(failing)}/{len(checked)}"
        parts.append(part + (f" (fails: {', '.join(failing)})" if failing else ""))
    return "package checks (ruff not on PATH): " + "; ".join(parts)
