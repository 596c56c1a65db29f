"""`codegen lint --fix`: apply the codemod each fixable finding names.

Why only some codes: registering a forgotten package has one right answer (the target's
entry for it), and so has moving an entry back into a sorted container's order (CG005); a
dangling entry, a duplicate or a wrong spec name needs a human to choose.
Imports libcst (through the codemods) only when there is something to fix.
"""

from __future__ import annotations

from pathlib import Path

from codegen.lint.findings import Finding, display


def apply_fixes(findings: list[Finding]) -> list[str]:
    """Fix what can be fixed; return one report line per file edit."""
    from codegen.codemods.lock import locked

    # held for the whole run: its rollback restores texts it read, which must still be current
    with locked(*_folders(findings)):
        return _apply(findings)


def _folders(findings: list[Finding]) -> list[Path]:
    """The folders of every file a fix may edit."""
    from codegen.codemods.lock import holding_folder
    from codegen.targets import get_target
    from codegen.targets.apply import registry_folders

    folders = []
    for fix in {f.fix for f in findings if f.fix is not None}:
        if fix.kind == "reorder":
            folders.append(holding_folder(fix.root))
        else:
            folders += registry_folders(get_target(fix.target), fix.root)
    return folders


def _apply(findings: list[Finding]) -> list[str]:
    from codegen.targets import get_target
    from codegen.targets.apply import plan_register, write_edits

    done, reports = set(), []
    originals: dict = {}  # path -> text before the first fix: all fixes land, or none
    try:
        for finding in findings:
            fix = finding.fix
            if fix is None or fix in done:
                continue
            done.add(fix)
            if fix.kind == "reorder":
                reports += _reorder(fix, findings, done, originals)
                continue
            edits = plan_register(get_target(fix.target), fix.name, fix.root)
            for edit in edits:
                if edit.changed:
                    originals.setdefault(edit.path, edit.old)
            write_edits(edits)
            reports.extend(_report(fix, edits))
    except BaseException:
        _restore(originals)
        raise
    return reports


def _reorder(fix, findings: list[Finding], done: set, originals: dict) -> list[str]:
    """Move every stray key of one container back into sorted order, in one write."""
    from codegen.codemods.files import read_source, write_atomic
    from codegen.codemods.reorder import sort_strays

    same = [
        f.fix
        for f in findings
        if f.fix is not None
        and f.fix.kind == "reorder"
        and (f.fix.root, f.fix.container) == (fix.root, fix.container)
    ]
    done.update(same)
    old = read_source(fix.root)
    new, moved = sort_strays(old, fix.container, [f.name for f in same], path=str(fix.root))
    if new == old:
        return []
    originals.setdefault(fix.root, old)
    write_atomic(fix.root, new)
    keys = ", ".join(map(repr, moved))
    return [f"{display(fix.root)}: fixed: moved {keys} to sorted order in {fix.container}"]


def _restore(originals: dict) -> None:
    """Put back every file an earlier fix of this run already rewrote."""
    from codegen.codemods.files import read_source, write_atomic

    for path, text in originals.items():
        if read_source(path) != text:
            write_atomic(path, text)


def _report(fix, edits) -> list[str]:
    reports = []
    for edit in edits:
        for outcome in edit.outcomes:
            if outcome.status == "added":
                key = outcome.key or fix.name  # the key written (an arch for some targets)
                reports.append(
                    f"{display(edit.path)}:{outcome.line}: fixed: registered {key!r} "
                    f"in {outcome.label} ({outcome.reason})"
                )
    return reports
