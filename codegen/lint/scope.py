"""What one `codegen lint` run checks: which house models packages and which targets.

Why: the hook must do the right thing with no arguments (the repository's own
`references/`, or what `[tool.codegen]` lists), with explicit `--models`/`--target`, and
with the changed file names pre-commit passes (only the registries those files belong to).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codegen.errors import CodegenError
from codegen.lint.config import find_pyproject, load_config
from codegen.lint.house import CONTAINER
from codegen.models import references_dir
from codegen.targets import get_target
from codegen.targets.model import Target


@dataclass
class Scope:
    models: list[Path] = field(default_factory=list)
    targets: list[tuple[Target, Path]] = field(default_factory=list)


def default_models() -> Path:
    """The repository's `references/` (or `codegen/references` in an installed wheel)."""
    return references_dir()


def _models_dir(path: Path) -> Path:
    if not (path / "__init__.py").is_file():
        raise CodegenError("not a models package (no __init__.py)", path=str(path))
    return path.resolve()


def resolve_scope(
    paths: tuple[Path, ...],
    models: tuple[Path, ...],
    target: str | None,
    repo: Path | None,
    cwd: Path,
) -> Scope:
    if models or target:
        scope = Scope([_models_dir(m) for m in models])
        if target == "house":  # the house target's root is a models package
            scope.models.append(_models_dir(repo) if repo else default_models())
        elif target:
            scope.targets.append((get_target(target), (repo or cwd).resolve()))
    else:
        config = load_config(find_pyproject(cwd))
        if config is not None and (config.models or config.targets):
            scope = Scope([_models_dir(m) for m in config.models], list(config.targets))
        else:
            scope = Scope([default_models()])
    return _narrow(scope, paths) if paths else scope


def _narrow(scope: Scope, paths: tuple[Path, ...]) -> Scope:
    """Only the registries the given files belong to; unknown models packages are found by
    walking up to an `__init__.py` that holds the registry container."""
    narrowed = Scope()
    for path in paths:
        resolved = path.resolve()
        chain = [resolved, *resolved.parents]
        for models in scope.models:
            if models in chain and models not in narrowed.models:
                narrowed.models.append(models)
        for target, root in scope.targets:
            if root in chain and (target, root) not in narrowed.targets:
                narrowed.targets.append((target, root))
        if not any(m in chain for m in scope.models) and not any(
            r in chain for _, r in scope.targets
        ):
            found = _enclosing_models(chain)
            if found is not None and found not in narrowed.models:
                narrowed.models.append(found)
    return narrowed


def _enclosing_models(chain: list[Path]) -> Path | None:
    for directory in chain:
        init = directory / "__init__.py"
        try:
            if init.is_file() and f"{CONTAINER} =" in init.read_text(encoding="utf-8"):
                return directory
        except (OSError, UnicodeDecodeError):
            continue
    return None
