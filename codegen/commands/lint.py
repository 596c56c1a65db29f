"""`codegen lint`: static, import-free consistency check of model registries.

Imports neither torch, transformers nor the models, and not even libcst unless `--fix`
has something to fix: it runs on every commit.
"""

from __future__ import annotations

from pathlib import Path

import click

from codegen.lint.findings import CODES
from codegen.lint.run import run_checks
from codegen.lint.scope import resolve_scope
from codegen.targets import TARGETS


@click.command(epilog="Codes: " + "; ".join(f"{k} {v}" for k, v in CODES.items()))
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--models",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="House-layout models package to check (repeatable; default: references/ or "
    "[tool.codegen] models).",
)
@click.option("--target", type=click.Choice(sorted(TARGETS)), help="Also check a framework target.")
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Repository of --target (default: .).",
)
@click.option("--fix", is_flag=True, help="Apply the codemods for fixable findings (CG001).")
@click.option(
    "--dead-code",
    is_flag=True,
    help="Instead: the dead-code check (DC1 constant conditions, DC2 unreachable branches, "
    "DC3 unread ModelArgs fields) of the model packages PATHS (or the packages in them).",
)
def lint(paths, models, target, repo, fix, dead_code):
    """Check registries against the model packages on disk; print `file:line: CODE message`.

    PATHS (e.g. the files pre-commit passes) narrow the check to the registries they belong
    to. Exit 1 on findings, 0 when clean.
    """
    if dead_code:
        from codegen.quality.check import check_folders

        findings = check_folders([Path(p) for p in paths])
        for finding in findings:
            click.echo(finding.render())
        if findings:
            raise SystemExit(1)
        return
    scope = resolve_scope(tuple(paths), tuple(models), target, repo, Path.cwd())
    findings = run_checks(scope)
    if fix and any(f.fix for f in findings):
        from codegen.lint.fix import apply_fixes

        for report in apply_fixes(findings):
            click.echo(report, err=True)
        findings = run_checks(scope)
    for finding in findings:
        click.echo(finding.render())
    if findings:
        raise SystemExit(1)  # ctx.exit(1) would be swallowed by main()
