"""`codegen scaffold NAME`: generate a model package from the closest reference."""

from __future__ import annotations

import functools
import gc
import json
from pathlib import Path

import click

from codegen.errors import CodegenError
from codegen.scaffold.config_reads import MissingConfigFields


def _collector_paused(command):
    """Run `command` without Python's cyclic garbage collector: a scaffold allocates some
    10^6 short-lived libcst nodes, freed by reference counting, and the collector's passes
    over them cost a tenth of its time while finding next to nothing to free."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return command(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return run


@click.command()
@click.argument("target")
@click.option("--from", "reference", help="Reference to start from (default: the closest).")
@click.option("--name", help="Package name (default: the target's model_type).")
@click.option(
    "--out",
    "models_dir",
    type=click.Path(path_type=Path),
    help="Models package to write into (default: the house references package).",
)
@click.option("--config", "config_path", help="A config.json to analyse the target under.")
@click.option(
    "--explain", is_flag=True, help="Print the plan (reference, rules, evidence); write nothing."
)
@click.option(
    "--dry-run", is_flag=True, help="Print the files that would be written; write nothing."
)
@click.option("--force", is_flag=True, help="Overwrite an existing package of that name.")
@click.option("--json", "as_json", is_flag=True, help="With --explain: the plan as JSON.")
@_collector_paused
def scaffold(target, reference, name, models_dir, config_path, explain, dry_run, force, as_json):
    """Generate a complete model package for TARGET and register it.

    TARGET is a model_type of the installed transformers, a modeling_*.py, or a checkpoint
    folder with config.json. The package (args, model, state-dict adapter, spec) and a
    parity test are written to --out/NAME, and NAME is added to --out's MODEL_SPECS, so
    `codegen verify NAME --models OUT` finds it at once.
    """
    from codegen.models import references_dir
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    loaded = load_target(target, config_path)
    plan = make_plan(loaded, name=name, reference=reference)
    if explain:
        refused, missing = [], []
        if plan.complete:
            try:
                refused = _refused_settings(plan, loaded)
            except MissingConfigFields as err:  # what scaffold would stop on: shown, not raised
                missing = err.reads
        if as_json:
            click.echo(json.dumps(_plan_json(plan, refused, missing), indent=2))
        else:
            click.echo(_explain(plan, refused, missing))
        return
    if not plan.complete:
        gaps = "; ".join(str(gap) for gap in plan.gaps)
        raise CodegenError(f"{target}: no rule realises {gaps}; nothing written")
    models_dir = models_dir or references_dir()
    if dry_run:
        _dry_run(plan, models_dir, loaded)
        return
    from codegen.scaffold.pipeline import scaffold_into

    path, applied = scaffold_into(
        models_dir,
        plan.reference,
        plan.name,
        list(plan.model_types),
        list(plan.steps),
        features=loaded.features,
        force=force,
        target=loaded,
    )
    click.echo(f"wrote {path} from {plan.reference} ({len(applied)} rules); registered")
    click.echo(f"next: codegen verify {plan.name} --models {models_dir}")


def _rules(plan):
    return [step for step in plan.steps if step.rule]


def _explain(plan, refused=(), missing=()) -> str:
    lines = [f"{plan.name}: from the {plan.reference} reference"]
    for step in _rules(plan):
        lines.append(f"  rule {step.rule:<22} -> {step.transform}  {step.reason}")
    for step in plan.steps:
        if not step.rule:
            lines.append(f"  then {step.transform}")
    for gap in plan.gaps:
        lines.append(f"  NO RULE for {gap}")
    for item in refused:
        where = f" ({item['evidence']})" if item["evidence"] else ""
        lines.append(
            f"  REFUSES {item['field']} other than {item['value']!r}: the package does not"
            f" realise this setting{where}"
        )
    for field, line in missing:
        lines.append(
            f"  READS hf_config.{field} (args.py:{line}): the target's config has no such field"
        )
    if not plan.complete:
        lines.append("incomplete")
    elif missing:
        lines.append("incomplete: from_hf_config reads config fields the target lacks")
    elif refused:
        lines.append(
            f"complete: every difference has a rule; {len(refused)} setting(s) refused in"
            " from_hf_config (gaps: no rule realises them)"
        )
    else:
        lines.append("complete: every difference has a rule")
    return "\n".join(lines)


def _refused_settings(plan, target) -> list[dict]:
    """The config settings the package would refuse in `from_hf_config` (its FIXED_SETTINGS,
    read from the package built in memory: which switches it realises is known only once
    the transforms ran), each with where the HF source branches on it."""
    import ast

    from codegen.scaffold.build import build_package

    files = build_package(
        plan.reference,
        plan.name,
        list(plan.model_types),
        list(plan.steps),
        features=target.features,
        target=target,
    )
    fixed = {}
    for node in ast.parse(files["args.py"]).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "FIXED_SETTINGS" for t in node.targets
        ):
            fixed = ast.literal_eval(node.value)
    evidence = {}
    for switch in getattr(target.features, "switches", ()):
        cited = [e for value in switch.values for e in value.evidence] + list(switch.reads)
        evidence.setdefault(switch.field, cited[0] if cited else "")
    return [
        {"field": field, "value": value, "evidence": evidence.get(field, "")}
        for field, value in fixed.items()
    ]


def _plan_json(plan, refused=(), missing=()) -> dict:
    return {
        "name": plan.name,
        "model_types": list(plan.model_types),
        "reference": plan.reference,
        "rules": [
            {"rule": s.rule, "transform": s.transform, "reason": s.reason} for s in _rules(plan)
        ],
        "gaps": [
            {"feature": g.feature, "value": g.value, "evidence": g.evidence} for g in plan.gaps
        ],
        "refused": list(refused),
        "missing_config_fields": [{"field": field, "line": line} for field, line in missing],
        "complete": plan.complete and not missing,
    }


def _dry_run(plan, models_dir: Path, target) -> None:
    from codegen.scaffold.build import build_package
    from codegen.scaffold.testgen import test_file

    files = build_package(
        plan.reference,
        plan.name,
        list(plan.model_types),
        list(plan.steps),
        features=target.features,
        target=target,
    )
    filename, text = test_file(plan.name, plan.name)
    files[filename] = text
    for filename, text in files.items():
        click.echo(f"=== {models_dir / plan.name / filename}")
        click.echo(text)
