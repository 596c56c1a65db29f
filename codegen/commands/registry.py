"""`codegen registry add`: insert one entry into one registry container, in place."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import click

from codegen.codemods.add import add_entry
from codegen.codemods.base import Conflict
from codegen.codemods.files import read_source, unified_diff, write_atomic
from codegen.codemods.lock import holding_folder, locked
from codegen.lint.findings import display


@click.group()
def registry():
    """Edit registry containers in place (concrete-syntax preserving codemods)."""


@registry.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("container")
@click.argument("key")
@click.argument("values", nargs=-1)
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff; write nothing.")
@click.option(
    "--check", is_flag=True, help="Exit 1 if the entry is missing or differs; write nothing."
)
@click.option("--section", help="Insert under the section comment containing this text.")
@click.option(
    "--expr",
    "expression",
    is_flag=True,
    help="The one VALUE is a Python expression, e.g. '_HfExamplesInfo(\"org/model\")'.",
)
def add(
    file: Path,
    container: str,
    key: str,
    values: tuple[str, ...],
    show_diff,
    check,
    section,
    expression,
):
    """Add KEY (with VALUEs) to CONTAINER in FILE.

    CONTAINER is NAME, Class.NAME, 'from PKG' (side-effect imports) or 'if NAME' (an
    if/elif chain), optionally NAME@LINE. One VALUE is a scalar; several make a tuple shaped
    like the neighbours. An identical entry is a no-op; a different value under KEY is an
    error.
    """
    writing = not (show_diff or check)  # readers need no lock: writes are atomic
    with locked(holding_folder(file)) if writing else nullcontext():
        source = read_source(file)
        try:
            outcome = add_entry(
                source,
                container,
                key,
                values,
                path=str(file),
                section=section,
                expression=expression,
            )
        except Conflict as conflict:
            if not check:
                raise
            click.echo(f"{display(file)}:{conflict.line}: {key!r} differs: {conflict.existing}")
            raise SystemExit(1) from None
        where = f"{display(file)}:{outcome.line}"
        if outcome.status == "present":
            click.echo(f"{where}: {key!r} already in {outcome.label}; nothing to do")
            return
        if check:
            click.echo(f"{where}: {key!r} missing from {outcome.label}")
            raise SystemExit(1)  # ctx.exit(1) would be swallowed by main()
        if show_diff:
            click.echo(unified_diff(source, outcome.source, display(file)), nl=False)
            return
        write_atomic(file, outcome.source)
        click.echo(f"{where}: added {key!r} to {outcome.label} ({outcome.reason})")
        for note in outcome.notes:
            click.echo(f"{where}: {note}")
