"""Checks for a framework target inside its repository (`[tool.codegen]` targets).

Why: the same drift happens in other frameworks' registries: an entry whose module was
renamed, a model package nobody imported, a duplicate, a stray from the sort order. What a
value means (`mod.Class`, `mod:attr`, `(module, class)`) comes from the target's data.
"""

from __future__ import annotations

import re
from pathlib import Path

from codegen.lint.containers import check_container
from codegen.lint.findings import Finding, Fix
from codegen.lint.house import load_container, model_packages, package_files
from codegen.lint.read import AstContainer, AstEntry, Unreadable, parse_file, top_level_names
from codegen.lint.resolve import module_file
from codegen.targets.model import Registry, Target


def registry_file(repo: Path, registry: Registry) -> tuple[Path, AstContainer] | Finding | None:
    """The first candidate file that holds the registry's container (None: an optional
    registry this release does not have)."""
    last: Finding | None = None
    for relative in registry.files:
        path = repo / relative
        if not path.is_file():
            continue
        found = load_container(path, registry.container)
        if isinstance(found, AstContainer):
            return path, found
        last = found
    if last is not None:
        return last
    if registry.optional:
        return None
    tried = ", ".join(registry.files)
    return Finding(repo, 1, "CG007", f"no registry file found (looked for {tried})")


def check_target(target: Target, repo: Path) -> list[Finding]:
    findings: list[Finding] = []
    mentioned: set[str] = set()
    for registry in target.registries:
        located = registry_file(repo, registry)
        if located is None:
            continue
        if isinstance(located, Finding):
            findings.append(located)
            continue
        path, container = located
        findings += check_container(path, registry.container, container)
        for entry in container.entries:
            mentioned.add(entry.key)
            for value in entry.values or ():
                mentioned.update(re.split(r"[.:]", value))
            findings += _resolve(repo, path, registry, entry)
    if target.models_dir is not None:  # the package checks house lint does, here too
        if (repo / target.models_dir).is_dir():
            findings += package_files(repo / target.models_dir, target.marker)
    if target.models_dir is not None:
        models = repo / target.models_dir
        for package in model_packages(models, target.marker) if models.is_dir() else []:
            if package.name not in mentioned:
                first = target.registries[0]
                path = next((repo / f for f in first.files if (repo / f).is_file()), repo)
                findings.append(
                    Finding(
                        path,
                        1,
                        "CG001",
                        f"model package {package.name!r} is not registered in {first.container}",
                        fix=Fix(target.name, package.name, repo),
                    )
                )
    return findings


def _resolve(repo: Path, path: Path, registry: Registry, entry: AstEntry) -> list[Finding]:
    """CG002 unless the entry's module file exists and defines the named class."""
    values = entry.values or ()
    if registry.resolve is None or not values:
        return []
    found = registry.reference(values)
    if found is None:
        return [Finding(path, entry.line, "CG002", f"{entry.key!r}: value has an unexpected shape")]
    module, attr = found
    file = module_file([repo, repo / "src"], module)
    if file is None:
        return [Finding(path, entry.line, "CG002", f"{entry.key!r}: module {module!r} not found")]
    try:
        names = top_level_names(parse_file(file).tree)
    except Unreadable as err:
        return [Finding(file, err.line, "CG007", str(err))]
    if names is not None and attr not in names:
        return [
            Finding(path, entry.line, "CG002", f"{entry.key!r}: {module} does not define {attr}")
        ]
    return []
