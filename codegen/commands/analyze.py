"""`codegen analyze TARGET...`: architecture features of HF models, with evidence.

Static: the modeling/config files are parsed with libcst and interpreted symbolically; nothing
is imported or executed, and neither torch nor transformers is loaded.

A batch is analysed target by target: a bad target (unknown model_type, unreadable config, a
file with no model) becomes an error row in its place and the others are still reported; the
exit status is 2 at the end if any target failed.
"""

from __future__ import annotations

import click

from codegen.errors import CodegenError


@click.command(name="analyze")
@click.argument("targets", nargs=-1, required=True)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="config.json to use instead of the target's (or the config class defaults).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per target.")
def analyze(targets: tuple[str, ...], config: str | None, as_json: bool) -> None:
    """Analyse TARGETS: a model_type of the installed transformers (qwen3), a modeling_*.py
    file, or a checkpoint folder with config.json (and its modeling_*.py for remote code).

    Prints the onboarding checklist (feature, value, evidence), the closest reference and its
    delta, and the features no rule covers yet. With several TARGETS a failing one gets an
    error row and the rest are still analysed; the exit status is 2 if any failed.
    """
    from codegen.analyze.analysis import analyze as run
    from codegen.analyze.report import render_error, render_json, render_text

    if len(targets) == 1:  # one target: its error is the whole answer, one line on stderr
        results = [run(targets[0], config)]
    else:
        results = [_attempt(run, target, config) for target in targets]
    failed = [(t, r) for t, r in zip(targets, results, strict=True) if isinstance(r, str)]
    if as_json:
        click.echo(render_json(results, targets))
    else:
        blocks = [
            render_error(t, r) if isinstance(r, str) else render_text(r)
            for t, r in zip(targets, results, strict=True)
        ]
        click.echo("\n\n".join(blocks))
    if failed:
        names = ", ".join(t for t, _ in failed)
        raise CodegenError(f"{len(failed)} of {len(targets)} targets failed: {names}")


def _attempt(run, target: str, config: str | None):
    """Features of `target`, or the one-line reason it could not be analysed."""
    try:
        return run(target, config)
    except CodegenError as err:
        return str(err)
    except RecursionError:
        return "internal error: the analysis recursed too deeply"
    except Exception as err:  # noqa: BLE001 - one broken target must not hide the others
        return f"internal error: {type(err).__name__}: {err}"
