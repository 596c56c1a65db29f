"""Checks for a house-layout models package (`references/`, or any `--models` directory).

Why: this is the registry codegen itself writes to, so it gets the full set: every model
package registered (CG001), every entry resolving to a spec that exists (CG002), no
duplicates or strays from the sort order (CG003, CG005), no `model_type` claimed twice
(CG004), each spec's `name` equal to its key (CG006), every package file parsing (CG007) and
no model folder without a spec (CG008). All by reading files.
"""

from __future__ import annotations

import ast
from pathlib import Path

from codegen.codemods.selector import parse_selector
from codegen.lint.containers import check_container
from codegen.lint.findings import Finding, Fix
from codegen.lint.read import AstContainer, Unreadable, find_containers, parse_file, top_level_names
from codegen.lint.resolve import module_file, spec_fields, string_members
from codegen.targets.house import TARGET

CONTAINER = TARGET.registries[0].container


def model_packages(models: Path, marker: str = "spec.py") -> list[Path]:
    """Sub-directories of `models` holding `marker`, skipping private and hidden ones."""
    return sorted(
        child
        for child in models.iterdir()
        if child.is_dir() and child.name[:1] not in "_." and (child / marker).is_file()
    )


def load_container(path: Path, selector_text: str) -> AstContainer | Finding:
    """The single container `selector_text` names in `path`, or a CG007 finding."""
    try:
        parsed = parse_file(path)
    except Unreadable as err:
        return Finding(path, err.line, "CG007", str(err))
    found = find_containers(parsed, parse_selector(selector_text))
    if len(found) != 1:
        what = "no" if not found else "more than one"
        return Finding(path, 1, "CG007", f"{what} registry container '{selector_text}' here")
    return found[0]


def package_files(models: Path, marker: str = "spec.py") -> list[Finding]:
    """CG008 for a folder holding a model but no `marker`; CG007 for a package's Python
    files that do not parse (besides the spec, which the registry checks read anyway).

    Test files are skipped: they are not imported when the package is loaded.
    """
    findings = []
    for child in sorted(models.iterdir()):
        if not child.is_dir() or child.name[:1] in "_.":
            continue
        has_spec = (child / marker).is_file()
        if not has_spec and (child / "model.py").is_file():
            message = (
                f"model package {child.name!r} has model.py but no {marker}: nothing registers it"
            )
            findings.append(Finding(child / "model.py", 1, "CG008", message))
        if not has_spec and not (child / "model.py").is_file():
            continue
        for file in sorted(child.glob("*.py")):
            if file.name == marker or file.name.startswith("test_"):
                continue
            try:
                parse_file(file)
            except Unreadable as err:
                findings.append(Finding(file, err.line, "CG007", str(err)))
    return findings


def check_house(models: Path) -> list[Finding]:
    registry = models / "__init__.py"
    container = load_container(registry, CONTAINER)
    if isinstance(container, Finding):
        return [container, *package_files(models, TARGET.marker)]
    findings = check_container(registry, CONTAINER, container, always_sorted=True)
    findings += package_files(models, TARGET.marker)
    named: set[str] = set()
    claims: dict[str, str] = {}
    for entry in container.entries:
        value = entry.values[0] if entry.values and len(entry.values) == 1 else None
        if value is None or value.count(":") != 1:
            findings.append(
                Finding(
                    registry, entry.line, "CG002", f"{entry.key!r}: value must be 'module:ATTR'"
                )
            )
            continue
        module, attr = value.split(":")
        module = module.removeprefix(models.name + ".")
        named.add(module.split(".")[0])
        findings += _check_entry(models, registry, entry.key, entry.line, module, attr, claims)
    for package in model_packages(models, TARGET.marker):
        if package.name not in named and package.name not in {e.key for e in container.entries}:
            findings.append(
                Finding(
                    registry,
                    container.line,
                    "CG001",
                    f"model package {package.name!r} is not registered in {CONTAINER}",
                    fix=Fix("house", package.name, models),
                )
            )
    return findings


def _check_entry(models, registry, key, line, module, attr, claims) -> list[Finding]:
    spec_path = module_file([models], module)
    if spec_path is None:
        expected = models.joinpath(*module.split(".")).relative_to(models.parent)
        message = f"{key!r}: module {module!r} not found (no {expected}.py)"
        return [Finding(registry, line, "CG002", message)]
    try:
        parsed = parse_file(spec_path)
    except Unreadable as err:
        return [Finding(spec_path, err.line, "CG007", str(err))]
    names = top_level_names(parsed.tree)
    if names is not None and attr not in names:
        return [Finding(registry, line, "CG002", f"{key!r}: {module} does not define {attr}")]
    fields = spec_fields(parsed, attr)
    if fields is None:
        return []
    findings = []
    name = fields.get("name")
    if isinstance(name, ast.Constant) and isinstance(name.value, str) and name.value != key:
        findings.append(
            Finding(
                spec_path,
                name.lineno,
                "CG006",
                f"spec name {name.value!r} differs from its registry key {key!r}",
            )
        )
    types = fields.get("supported_model_types")
    for model_type, type_line in (string_members(types) or []) if types is not None else []:
        other = claims.setdefault(model_type, key)
        if other != key:
            findings.append(
                Finding(
                    spec_path,
                    type_line,
                    "CG004",
                    f"model_type {model_type!r} is claimed by both {other!r} and {key!r}",
                )
            )
    return findings
