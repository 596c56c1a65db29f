"""`[tool.codegen]` in pyproject.toml: which models packages and targets `lint` checks.

Why: a project that keeps its models outside `references/`, or that vendors a framework,
says so once and every `codegen lint` (and the pre-commit hook) picks it up:

    [tool.codegen]
    models = ["src/mypkg/models"]           # house-layout packages, relative to this file

    [[tool.codegen.targets]]
    target = "vllm"                         # a name from codegen.targets
    repo = "third_party/vllm"               # relative to this file; default "."
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codegen.errors import CodegenError
from codegen.targets import get_target
from codegen.targets.model import Target


@dataclass(frozen=True)
class LintConfig:
    models: tuple[Path, ...]
    targets: tuple[tuple[Target, Path], ...]
    source: Path | None = None


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start`."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(pyproject: Path | None) -> LintConfig | None:
    """The `[tool.codegen]` table of `pyproject`, or None when there is none."""
    if pyproject is None:
        return None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            return None
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise CodegenError(f"cannot read [tool.codegen]: {err}", path=str(pyproject)) from None
    table = data.get("tool", {}).get("codegen")
    if table is None:
        return None
    base = pyproject.parent
    models = table.get("models", [])
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise CodegenError(
            "[tool.codegen] models must be a path or a list of paths", path=str(pyproject)
        )
    targets = []
    for item in table.get("targets", []):
        if not isinstance(item, dict) or "target" not in item:
            raise CodegenError(
                'each [[tool.codegen.targets]] needs target = "NAME"', path=str(pyproject)
            )
        targets.append((get_target(item["target"]), base / item.get("repo", ".")))
    return LintConfig(tuple(base / m for m in models), tuple(targets), pyproject)
