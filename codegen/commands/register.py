"""`codegen register`: every registry edit a framework needs for a new model."""

from __future__ import annotations

from pathlib import Path

import click

from codegen.codemods.files import unified_diff
from codegen.lint.findings import display
from codegen.lint.scope import default_models
from codegen.targets import TARGETS, get_target
from codegen.targets.apply import plan_register, write_edits


@click.command()
@click.argument("name")
@click.option(
    "--target",
    type=click.Choice(sorted(TARGETS)),
    default="house",
    show_default=True,
    help="Framework layout to register into.",
)
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False),
    help="Framework checkout (default: .; for house: the repo holding references/).",
)
@click.option(
    "--models",
    type=click.Path(path_type=Path, file_okay=False),
    help="House models package (default: this repository's references/).",
)
@click.option("--arch", help="Architecture class name (default: <Name>ForCausalLM).")
@click.option("--model-type", help="HF model_type (default: NAME).")
@click.option("--diff", "show_diff", is_flag=True, help="Print unified diffs; write nothing.")
@click.option("--check", is_flag=True, help="Exit 1 if any entry is missing; write nothing.")
def register(name, target, repo, models, arch, model_type, show_diff, check):
    """Register model NAME in every registry file of a framework TARGET.

    All edits are computed before anything is written; entries already present are left
    alone, so running it twice changes nothing.
    """
    spec = get_target(target)
    if target == "house":
        root = models or (repo / "references" if repo else default_models())
    else:
        root = repo or Path.cwd()
    edits = plan_register(spec, name, root, arch=arch, model_type=model_type)
    missing = [e for e in edits if e.changed]
    if show_diff:
        for edit in missing:
            click.echo(unified_diff(edit.old, edit.new, display(edit.path)), nl=False)
        return
    if not check:
        write_edits(edits)  # all files checked writable first; nothing reported before
    for edit in edits:
        for outcome in edit.outcomes:
            where = f"{display(edit.path)}:{outcome.line}"
            if outcome.status == "present":
                click.echo(f"{where}: {name!r} already in {outcome.label}")
            elif check:
                click.echo(f"{where}: {name!r} missing from {outcome.label}")
            else:
                click.echo(f"{where}: registered {name!r} in {outcome.label} ({outcome.reason})")
    if check and missing:
        raise SystemExit(1)  # ctx.exit(1) would be swallowed by main()
