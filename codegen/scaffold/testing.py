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


def seed_swap(models: Path, name: str, one: str, other: str, file: str = "model.py") -> None:
    """Exchange the one occurrence each of `one` and `other` in the package's `file`."""
    seed(models, name, one, "@swapped@", file=file)
    seed(models, name, other, one, file=file)
    seed(models, name, "@swapped@", other, file=file)


def seeded_copy(
    built: Path, models: Path, name: str, old: str, new: str, file: str = "model.py"
) -> Path:
    """A copy at `models` of the packages folder `built`, `old` replaced by `new` once in the
    package's `file` (a seeded defect that leaves the built package as it is). Returns `models`."""
    import shutil

    shutil.copytree(built, models)
    seed(models, name, old, new, file=file)
    return models


def plan_folder(folder: Path, rules=()):
    """(target, plan) of the checkpoint folder, asserting the plan is complete and takes
    every rule of `rules`."""
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    target = load_target(str(folder))
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    taken = {step.rule for step in plan.steps}
    assert set(rules) <= taken, sorted(taken)
    return target, plan


def verify_folder(
    folder: Path, models: Path, capsys, *options: str, dtypes=("fp32",), switches: bool = True
) -> list[dict]:
    """The rows of `codegen verify FOLDER --models MODELS --trust-remote-code --json`: the
    folder's own code is the reference. `dtypes` add one `--dtype` each (`()`: verify's own
    default, fp32 and bf16), `options` go as they are (`--parallel tp=2`); `switches=False`
    keeps the base case's rows only (the toy config as the folder gives it). `capsys` is
    pytest's fixture, which takes the printed JSON."""
    import json

    from codegen.cli import main

    flags = [flag for dtype in dtypes for flag in ("--dtype", dtype)]
    capsys.readouterr()
    main(
        ["verify", str(folder), "--models", str(models), "--trust-remote-code", "--json"]
        + flags
        + list(options)
    )
    rows = json.loads(capsys.readouterr().out)
    return [row for row in rows if switches or "+" not in row["case"]]


def verify_shard_plan(folder: Path, models: Path, name: str, layout: str = "tp=2"):
    """The package's shard plan proved on CPU ranks (`layout`, e.g. "tp=2") against the
    package on one device, with the config of the checkpoint folder (its own code's)."""
    from transformers import AutoConfig

    from codegen.models import load_spec
    from codegen.verify.parallel import verify_parallel

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    return verify_parallel(load_spec(name, models), config, layout)
