"""Helpers for the end-to-end tests of a rule: scaffold a real target through its plan (all
steps, or all but one), verify the package, and break it in one place (a seeded defect)."""

from __future__ import annotations

from pathlib import Path


def write_planned(models: Path, planned, without: str | None = None, steps=None):
    """Scaffold `planned` (target, plan) into `models`; `without` drops that rule's step,
    `steps` replaces the plan's. Returns (models, package name)."""
    from codegen.scaffold.pipeline import scaffold_into

    target, plan = planned
    chosen = [step for step in (plan.steps if steps is None else steps) if step.rule != without]
    scaffold_into(
        models,
        plan.reference,
        plan.name,
        list(plan.model_types),
        chosen,
        features=target.features,
        target=target,
    )
    return models, plan.name


def verify_toy(models: Path, name: str, dtypes=("fp32",), case=None, **options):
    """Verify results of the package on its default toy case (or `case`), one per dtype;
    `options` go to `verify_case` (`gradients=False`: the logits and the stage only)."""
    from codegen.models import load_spec
    from codegen.verify.cases import default_cases
    from codegen.verify.run import verify_case

    spec = load_spec(name, models)
    return verify_case(
        spec, case or default_cases(spec, switches=False)[0], list(dtypes), **options
    )


def seed(models: Path, name: str, old: str, new: str, file: str = "model.py") -> None:
    """Replace the one occurrence of `old` in the package's `file` (a seeded defect)."""
    path = models / name / file
    source = path.read_text()
    assert source.count(old) == 1, f"{file}: {old!r} occurs {source.count(old)} times"
    path.write_text(source.replace(old, new))
