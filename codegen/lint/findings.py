"""Lint findings: `file:line: CODE message`, and the catalogue of codes.

Why codes: a pre-commit hook's output is read by people and grepped by scripts; a stable
code per kind of drift makes both easy, and this table is its documentation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CODES = {
    "CG001": "model package not registered (fixable with --fix)",
    "CG002": "registry entry does not resolve to a module file defining the named attribute",
    "CG003": "duplicate key in a registry container",
    "CG004": "model_type claimed by more than one spec",
    "CG005": "entry out of order in a container that is otherwise sorted (fixable with --fix)",
    "CG006": "spec name differs from its registry key",
    "CG007": "registry or model package file cannot be read or parsed",
    "CG008": "model package folder without a spec (nothing can register it)",
}


@dataclass(frozen=True)
class Fix:
    """How `--fix` repairs a finding: register `name` with a target rooted at `root`, or
    (kind "reorder") move key `name` of `container` in file `root` to its sorted place."""

    target: str
    name: str
    root: Path
    kind: str = "register"
    container: str = ""


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    code: str
    message: str
    fix: Fix | None = field(default=None, compare=False)

    def render(self) -> str:
        return f"{display(self.path)}:{self.line}: {self.code} {self.message}"


def display(path: Path) -> str:
    """A path relative to the working directory when it is under it (as pre-commit shows)."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative
