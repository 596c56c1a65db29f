"""Checks any registry container gets, whatever the framework: duplicates and order.

Why separate: they depend only on the keys and lines, so the house registry and every
framework target share them.
"""

from __future__ import annotations

from pathlib import Path

from codegen.codemods.order import misplaced
from codegen.lint.findings import Finding, Fix
from codegen.lint.read import AstContainer


def check_container(
    path: Path, label: str, container: AstContainer, *, always_sorted: bool = False
) -> list[Finding]:
    """CG003 for each repeated key, CG005 for strays from a sorted order.

    Repeats are left out of the order check: they are already reported once as CG003.
    """
    findings = []
    first_line: dict[str, int] = {}
    firsts = []
    for entry in container.entries:
        if entry.key in first_line:
            message = (
                f"duplicate key {entry.key!r} in {label} (first at line {first_line[entry.key]})"
            )
            findings.append(Finding(path, entry.line, "CG003", message))
        else:
            first_line[entry.key] = entry.line
            firsts.append(entry)
    if container.kind != "chain":
        for index in misplaced([e.key for e in firsts], always_sorted=always_sorted):
            entry = firsts[index]
            message = f"{entry.key!r} is out of order in {label}, which is kept sorted"
            fix = Fix("", entry.key, path, kind="reorder", container=label)
            findings.append(Finding(path, entry.line, "CG005", message, fix=fix))
    return findings
