"""`codegen lint --fix`: apply the codemod each fixable finding names.

Why only some codes: registering a forgotten package has one right answer (the target's
entry for it); a dangling entry, a duplicate or a wrong spec name needs a human to choose.
Imports libcst (through the codemods) only when there is something to fix.
"""

from __future__ import annotations

from codegen.lint.findings import Finding, display


def apply_fixes(findings: list[Finding]) -> list[str]:
    """Fix what can be fixed; return one report line per file edit."""
    from codegen.targets import get_target
    from codegen.targets.apply import plan_register, write_edits

    done, reports = set(), []
    for finding in findings:
        fix = finding.fix
        if fix is None or fix in done:
            continue
        done.add(fix)
        edits = plan_register(get_target(fix.target), fix.name, fix.root)
        write_edits(edits)
        for edit in edits:
            for outcome in edit.outcomes:
                if outcome.status == "added":
                    reports.append(
                        f"{display(edit.path)}:{outcome.line}: fixed: registered {fix.name!r} "
                        f"in {outcome.label} ({outcome.reason})"
                    )
    return reports
