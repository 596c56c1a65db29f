"""Turn "register model NAME with target T under ROOT" into concrete file edits.

Why a plan first: a framework may need several files edited. Every edit is computed before
anything is written, so a failure in the third file leaves the first two untouched, and
`--diff`/`--check` reuse the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codegen.codemods.add import add_entry
from codegen.codemods.base import Outcome
from codegen.codemods.files import check_writable, read_source, write_atomic
from codegen.codemods.selector import parse_selector
from codegen.errors import CodegenError
from codegen.lint.read import Unreadable, find_containers, parse_file
from codegen.lint.resolve import spec_attr
from codegen.targets.model import Registry, Target
from codegen.targets.variables import expand, variables


@dataclass
class FileEdit:
    """One file's text before and after all of a target's entries were added to it."""

    path: Path
    old: str
    new: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.old != self.new


def registry_path(root: Path, registry: Registry) -> Path:
    """The first candidate file under `root` that exists and holds the container."""
    selector = parse_selector(registry.container)
    existing = [root / f for f in registry.files if (root / f).is_file()]
    for path in existing:
        try:
            if find_containers(parse_file(path), selector):
                return path
        except Unreadable:
            return path  # let the codemod report the syntax error at its line
    if existing:
        return existing[0]  # the codemod says "container not found" naming the file
    tried = ", ".join(registry.files)
    raise CodegenError(f"no registry file of this target under {root} (looked for {tried})")


def plan_register(target: Target, name: str, root: Path, **overrides: str | None) -> list[FileEdit]:
    """Every edit registering `name`, file by file, in the target's order; nothing written."""
    found = variables(name, **overrides)
    for key, value in target.defaults.items():
        found.setdefault(key, value)
    if target.models_dir is not None:
        package = root / target.models_dir / name
        marker = package / target.marker
        if not marker.is_file():
            raise CodegenError(
                f"no model package here (expected {marker.name}); scaffold it first",
                path=str(package),
            )
        try:
            detected = spec_attr(parse_file(marker))
        except Unreadable as err:
            raise CodegenError(str(err), path=str(marker), line=err.line) from None
        if detected and not overrides.get("spec_attr"):
            found["spec_attr"] = detected
    edits: dict[Path, FileEdit] = {}
    for registry in target.registries:
        path = registry_path(root, registry)
        if path not in edits:
            text = read_source(path)
            edits[path] = FileEdit(path, text, text)
        edit = edits[path]
        outcome = add_entry(
            edit.new,
            registry.container,
            expand(registry.key, found),
            [expand(v, found) for v in registry.values],
            path=str(path),
            section=registry.section,
        )
        edit.new = outcome.source
        edit.outcomes.append(outcome)
    return list(edits.values())


def write_edits(edits: list[FileEdit]) -> None:
    """Write every changed file atomically, after checking all of them are writable."""
    changed = [e for e in edits if e.changed]
    for edit in changed:
        check_writable(edit.path)
    for edit in changed:
        write_atomic(edit.path, edit.new)
