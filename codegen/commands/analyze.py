"""`codegen analyze TARGET...`: architecture features of HF models, with evidence.

Static: the modeling/config files are parsed with libcst and interpreted symbolically; nothing
is imported or executed, and neither torch nor transformers is loaded.
"""

from __future__ import annotations

import click


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
    delta, and the features no rule covers yet.
    """
    from codegen.analyze.analysis import analyze as run
    from codegen.analyze.report import render_json, render_text

    results = [run(target, config) for target in targets]
    if as_json:
        click.echo(render_json(results))
        return
    click.echo("\n\n".join(render_text(f) for f in results))
