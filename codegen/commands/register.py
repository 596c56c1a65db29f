"""`codegen register`: every registry edit a framework needs for a new model."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import click

from codegen.codemods.files import unified_diff
from codegen.codemods.lock import locked
from codegen.errors import CodegenError
from codegen.lint.findings import display
from codegen.lint.scope import default_models
from codegen.targets import TARGETS, get_target
from codegen.targets.apply import plan_register, registry_folders, write_edits


def _settings(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise CodegenError(f"bad --set {pair!r}: expected NAME=VALUE")
        found[key] = value
    return found


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
@click.option("--arch", help="Architecture class name (default: <Prefix>ForCausalLM).")
@click.option(
    "--class-prefix",
    help="Class-name prefix (default: transformers' spelling of NAME: qwen3_5 -> Qwen3_5).",
)
@click.option("--model-type", help="HF model_type (default: NAME).")
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A target variable (e.g. example=ORG/MODEL for vLLM's test registry).",
)
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Register even though the model's module file does not exist yet.",
)
@click.option("--diff", "show_diff", is_flag=True, help="Print unified diffs; write nothing.")
@click.option(
    "--check", is_flag=True, help="Exit 1 if any entry is missing or differs; write nothing."
)
def register(
    name,
    target,
    repo,
    models,
    arch,
    class_prefix,
    model_type,
    pairs,
    allow_missing,
    show_diff,
    check,
):
    """Register model NAME in every registry file of a framework TARGET.

    All edits are computed before anything is written; entries already present are left
    alone, so running it twice changes nothing. The code an entry names must exist (the
    message names the missing file) unless --allow-missing.
    """
    spec = get_target(target)
    if target == "house":
        root = models or (repo / "references" if repo else default_models())
    else:
        root = repo or Path.cwd()
    writing = not (show_diff or check)  # readers need no lock: writes are atomic
    with locked(*registry_folders(spec, root)) if writing else nullcontext():
        edits = plan_register(
            spec,
            name,
            root,
            allow_missing=allow_missing,
            settings=_settings(pairs),
            check=check,
            arch=arch,
            class_prefix=class_prefix,
            model_type=model_type,
        )
        if writing:
            write_edits(edits)  # all files checked writable first; nothing reported before
    if show_diff:
        for edit in edits:
            if edit.changed:
                click.echo(unified_diff(edit.old, edit.new, display(edit.path)), nl=False)
        return
    failing = False
    for edit in edits:
        for outcome in edit.outcomes:
            where = f"{display(edit.path)}:{outcome.line}"
            key = outcome.key
            if outcome.status == "skipped":
                click.echo(f"{display(edit.path)}: {outcome.label} {outcome.reason}")
            elif outcome.status == "present":
                click.echo(f"{where}: {key!r} already in {outcome.label}")
            elif outcome.status == "differs":
                failing = True
                click.echo(f"{where}: {key!r} differs in {outcome.label}: {outcome.reason}")
            elif check:
                failing = True
                click.echo(f"{where}: {key!r} missing from {outcome.label}")
            else:
                click.echo(f"{where}: registered {key!r} in {outcome.label} ({outcome.reason})")
            if not check:
                for note in outcome.notes:
                    click.echo(f"{where}: {note}")
    if check and failing:
        raise SystemExit(1)  # ctx.exit(1) would be swallowed by main()
