"""Run every check in a scope and collect the findings, sorted by file and line."""

from __future__ import annotations

from codegen.lint.findings import Finding
from codegen.lint.house import check_house
from codegen.lint.scope import Scope
from codegen.lint.target_checks import check_target


def run_checks(scope: Scope) -> list[Finding]:
    findings: list[Finding] = []
    for models in scope.models:
        findings += check_house(models)
    for target, repo in scope.targets:
        findings += check_target(target, repo)
    unique = {(f.path, f.line, f.code, f.message): f for f in findings}
    return [unique[k] for k in sorted(unique, key=lambda k: (str(k[0]), k[1], k[2], k[3]))]
