"""Turn "register model NAME with target T under ROOT" into concrete file edits.

Why a plan first: a framework may need several files edited. Every edit is computed before
anything is written, so a failure in the third file leaves the first two untouched, and
`--diff`/`--check` reuse the same plan.

One rule for every target: the code an entry names must exist before it is registered
(the module file of a `module:Class`-like value, the model package of an import registry,
the modeling file next to transformers' auto mappings). A missing file is refused, naming
it, unless `allow_missing` (`--allow-missing`): an entry to nothing is a crash at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codegen.codemods.add import add_entry
from codegen.codemods.base import Conflict, Outcome
from codegen.codemods.files import check_writable, read_source, write_atomic
from codegen.codemods.lock import holding_folder
from codegen.codemods.selector import parse_selector
from codegen.errors import CodegenError
from codegen.lint.read import Unreadable, find_containers, parse_file, top_level_names
from codegen.lint.resolve import module_file, spec_attr
from codegen.targets.model import Registry, Target
from codegen.targets.variables import UnsetVariable, expand, variables


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


def registry_path(root: Path, registry: Registry) -> Path | None:
    """The first candidate file under `root` that exists and holds the container (None for
    an optional registry none of whose files exist)."""
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
    if registry.optional:
        return None
    tried = ", ".join(registry.files)
    raise CodegenError(f"no registry file of this target under {root} (looked for {tried})")


def registry_folders(target: Target, root: Path) -> list[Path]:
    """The folders of every registry file under `root` that `plan_register` may edit: what a
    writer locks (`codegen.codemods.lock`) from planning to its last write."""
    return [
        holding_folder(root / file)
        for registry in target.registries
        for file in registry.files
        if (root / file).is_file()
    ]


def _missing(root: Path, registry: Registry, key: str, values: list[str]) -> CodegenError | None:
    """Why the code `values` name is not there (None when it is, or nothing is resolved)."""
    found = registry.reference(values)
    if found is None:
        return None
    module, attr = found
    file = module_file([root, root / "src"], module)
    if file is None:
        base = root.joinpath(*module.split("."))
        return CodegenError(
            f"no such module file (nor {base}/__init__.py) for {key!r}",
            path=f"{base}.py",
        )
    try:
        names = top_level_names(parse_file(file).tree)
    except Unreadable:
        return None  # lint reports the file; registering it is not wrong
    if names is not None and attr not in names:
        return CodegenError(f"does not define {attr} (named by {key!r})", path=str(file))
    return None


def _values(root: Path, registry: Registry, key: str, found: dict[str, str], allow_missing: bool):
    """The value templates to write: the first layout whose code exists."""
    layouts = [registry.values, *registry.alternatives]
    reasons = []
    for layout in layouts:
        values = [expand(v, found) for v in layout]
        reason = None if registry.expression else _missing(root, registry, key, values)
        if reason is None:
            return values
        reasons.append(reason)
    if allow_missing:
        return [expand(v, found) for v in registry.values]
    raise CodegenError(
        f"{reasons[0]}; write the model first, or pass --allow-missing to register it anyway"
    )


def plan_register(
    target: Target,
    name: str,
    root: Path,
    *,
    allow_missing: bool = False,
    settings: dict[str, str] | None = None,
    check: bool = False,
    **overrides: str | None,
) -> list[FileEdit]:
    """Every edit registering `name`, file by file, in the target's order; nothing written.

    With `check`, an entry present under the key with another value is reported as a
    "differs" outcome instead of an error, so every registry is checked, and missing code is
    not an error (checking reads the registries only).

    A registry whose templates need a variable nobody set (`--set example=...`) is skipped
    with a note, as is an optional registry whose file this release does not have.
    """
    found = variables(name, **overrides)
    for key, value in {**target.defaults, **(settings or {})}.items():
        if key not in found or (settings and key in settings):
            found[key] = value
    if target.models_dir is not None:
        package = root / target.models_dir / name
        marker = package / target.marker
        if not marker.is_file() and not (allow_missing or check):
            raise CodegenError(
                f"no model package here (expected {marker.name}); scaffold it first, "
                "or pass --allow-missing",
                path=str(package),
            )
        if marker.is_file():
            try:
                detected = spec_attr(parse_file(marker))
            except Unreadable as err:
                raise CodegenError(str(err), path=str(marker), line=err.line) from None
            if detected and not overrides.get("spec_attr"):
                found["spec_attr"] = detected
    edits: dict[Path, FileEdit] = {}
    skipped: list[FileEdit] = []
    for registry in target.registries:
        path = registry_path(root, registry)
        if path is None:
            note = f"skipped: this release has no {registry.files[0]}"
            skipped.append(_skip(root / registry.files[0], registry, note))
            continue
        try:
            key = expand(registry.key, found)
            values = _values(root, registry, key, found, allow_missing or check)
            imports = [expand(i, found) for i in registry.imports]
        except UnsetVariable as unset:
            skipped.append(_skip(path, registry, f"skipped: needs --set {unset.name}=VALUE"))
            continue
        if registry.requires is not None and not check:
            required = (path.parent / expand(registry.requires, found)).resolve()
            if not required.is_file() and not allow_missing:
                raise CodegenError(
                    f"no such file (needed for {key!r}); write the model first, or pass "
                    "--allow-missing to register it anyway",
                    path=str(required),
                )
        if path not in edits:
            text = read_source(path)
            edits[path] = FileEdit(path, text, text)
        edit = edits[path]
        try:
            outcome = add_entry(
                edit.new,
                registry.container,
                key,
                values,
                path=str(path),
                section=registry.section,
                expression=registry.expression,
                imports=imports,
            )
        except Conflict as conflict:
            if not check:
                raise
            shown = ", ".join(map(repr, values))
            reason = f"{conflict.existing}, not {shown}"
            outcome = Outcome("differs", edit.new, conflict.line, reason, registry.container, key)
        edit.new = outcome.source
        edit.outcomes.append(outcome)
    return list(edits.values()) + skipped


def _skip(path: Path, registry: Registry, note: str) -> FileEdit:
    outcome = Outcome("skipped", "", 1, note, registry.container)
    return FileEdit(path, "", "", [outcome])


def write_edits(edits: list[FileEdit]) -> None:
    """Write every changed file atomically, after checking all of them are writable; if one
    write fails (or is interrupted), the files already written get their old text back."""
    changed = [e for e in edits if e.changed]
    for edit in changed:
        check_writable(edit.path)
    written: list[FileEdit] = []
    try:
        for edit in changed:
            write_atomic(edit.path, edit.new)
            written.append(edit)
    except BaseException:
        for edit in reversed(written):
            write_atomic(edit.path, edit.old)
        raise
