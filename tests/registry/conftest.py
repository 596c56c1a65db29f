"""Shared fixtures for the registry tests: house-layout model trees, framework repos, CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codegen.cli import main
from codegen.targets import get_target

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]

SPEC = '''\
"""The {name} ModelSpec."""

from codegen.spec import ModelSpec

from .args import ModelArgs
from .model import Model
from .state_dict_adapter import StateDictAdapter

{attr} = ModelSpec(
    name="{spec_name}",
    model=Model,
    args=ModelArgs,
    adapter=StateDictAdapter,
    supported_model_types=frozenset({types}),
)
'''


def write_model(models: Path, name: str, *, attr="SPEC", spec_name=None, types=None) -> Path:
    """One house-layout model package (only the files lint reads are meaningful)."""
    package = models / name
    package.mkdir(parents=True)
    model_types = types if types is not None else [name]
    (package / "spec.py").write_text(
        SPEC.format(
            name=name,
            attr=attr,
            spec_name=spec_name or name,
            types="{" + ", ".join(f'"{t}"' for t in model_types) + "}",
        )
    )
    (package / "__init__.py").write_text(f"from .spec import {attr}\n")
    for module in ("args", "model", "state_dict_adapter"):
        (package / f"{module}.py").write_text("")
    return package


def write_registry(models: Path, entries: dict[str, str]) -> Path:
    body = "".join(f'    "{k}": "{v}",\n' for k, v in entries.items())
    path = models / "__init__.py"
    path.write_text(f'"""Models."""\n\nMODEL_SPECS = {{\n{body}}}\n')
    return path


@pytest.fixture
def house(tmp_path):
    """Factory: a models package with `registered` in MODEL_SPECS and `extra` unregistered."""

    def make(registered=("llama", "qwen2"), extra=(), root=None):
        models = (root or tmp_path) / "models"
        models.mkdir(parents=True)
        for name in (*registered, *extra):
            write_model(models, name)
        write_registry(models, {n: f"{n}.spec:SPEC" for n in registered})
        return models

    return make


@pytest.fixture
def framework(tmp_path):
    """Factory: a fake framework checkout with a fixture at the target's registry path."""

    def make(target: str, fixture: str, index: int = 0) -> tuple[Path, Path]:
        repo = tmp_path / f"{target}-repo"
        registry = repo / get_target(target).registries[index].files[0]
        registry.parent.mkdir(parents=True, exist_ok=True)
        registry.write_text((FIXTURES / fixture).read_text())
        return repo, registry

    return make


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `codegen ARGS` in process from `cwd`; return (exit code, stdout, stderr)."""

    def run(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_subprocess(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m codegen.cli ARGS` in a fresh interpreter."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "codegen.cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture
def subprocess_cli():
    return run_subprocess


@pytest.fixture
def model_package():
    """`write_model(models, name, attr=..., spec_name=..., types=...)` as a fixture."""
    return write_model
