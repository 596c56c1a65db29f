"""Build, write and register one generated package (what `codegen scaffold` does last)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from codegen.scaffold.build import Step, build_package
from codegen.scaffold.testgen import test_file
from codegen.scaffold.write import install_package


class Installed(NamedTuple):
    """Where a package was written, and the rules that changed it (its header's list)."""

    path: Path
    rules: tuple[str, ...]


def scaffold_into(
    models_dir: Path,
    reference: str,
    name: str,
    model_types: list[str],
    steps: list[Step],
    *,
    features: Any = None,
    title: str | None = None,
    force: bool = False,
    target: Any = None,
) -> Installed:
    """Write `models_dir/name/` (package + its parity test) and register it there, all or
    nothing (see `codegen.scaffold.write`)."""
    title = title or name
    if not any(step.transform == "align_config_fields" for step in steps):
        given = features
        steps, features, loaded = _with_config_alignment(steps, model_types, features)
        if given is None:  # the target's own features: its defaults are what the text says
            target = target or loaded
    files = build_package(
        reference, name, model_types, steps, features=features, title=title, target=target
    )
    filename, text = test_file(name, title)
    files[filename] = text
    return Installed(install_package(models_dir, name, files, force=force), files.rules)


def _with_config_alignment(steps: list[Step], model_types: list[str], features):
    """A hand-picked step list (tests, experiments) gets the planner's config-field step:
    the reference's config reads (llama's `attention_bias`) become what the target's
    config has or the value its code fixes, as in every planned scaffold."""
    from codegen.scaffold.plan import config_alignment
    from codegen.scaffold.target import load_target

    target = load_target(model_types[0])
    return [*steps, config_alignment(target)], features or target.features, target


def verify_generated(models_dir: Path, name: str, dtypes=("fp32",), switches: bool = True):
    """verify_case over the default cases of a generated package (for tests and sweeps).

    `switches=False`: the config class defaults only, for a package built from a hand-picked
    step list (the planner's `guard_switches` step, which refuses unrealised switch
    settings, is not among them)."""
    from codegen.models import load_spec
    from codegen.verify.cases import default_cases
    from codegen.verify.run import verify_case

    spec = load_spec(name, models_dir)
    cases = default_cases(spec, switches=switches)
    return [r for case in cases for r in verify_case(spec, case, list(dtypes))]
