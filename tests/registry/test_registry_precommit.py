"""End to end with the real `pre-commit` tool: the shipped hooks fail on an unregistered model
package and pass once `codegen lint --fix` has registered it.

The hooks are taken from this repository's `.pre-commit-hooks.yaml` and installed as a
`repo: local` hook with `language: system`, so the test runs offline against the codegen
already installed here (a `language: python` hook would build a virtualenv from PyPI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("pre-commit") is None or shutil.which("git") is None,
    reason="needs the pre-commit and git executables",
)


def shipped_hooks() -> list[dict]:
    hooks = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [h["id"] for h in hooks] == ["codegen-lint", "codegen-fix"]
    local = []
    for hook in hooks:
        assert hook["entry"].startswith("codegen lint")
        hook = {**hook, "language": "system"}
        # `codegen` resolved to this interpreter's installation, not whatever is on PATH
        hook["entry"] = f"{sys.executable} -m codegen.cli" + hook["entry"].removeprefix("codegen")
        hook["stages"] = ["manual"] if hook["id"] == "codegen-fix" else ["pre-commit"]
        local.append(hook)
    return local


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PRE_COMMIT_HOME": str(cwd.parent / "pre-commit-home"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_hook_fails_on_unregistered_package_and_passes_after_fix(house, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    models = house(registered=("llama",), extra=("qwen2",), root=project)
    (project / "pyproject.toml").write_text('[tool.codegen]\nmodels = ["models"]\n')
    config = {"repos": [{"repo": "local", "hooks": shipped_hooks()}]}
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert run("git", "init", "-q", cwd=project).returncode == 0
    assert run("git", "add", "-A", cwd=project).returncode == 0

    failing = run("pre-commit", "run", "--all-files", cwd=project)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "codegen lint (model registries)" in failing.stdout
    assert (
        "models/__init__.py:3: CG001 model package 'qwen2' is not registered in MODEL_SPECS"
        in failing.stdout
    )

    fixed = run(sys.executable, "-m", "codegen.cli", "lint", "--fix", cwd=project)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert '"qwen2": "qwen2.spec:SPEC"' in (models / "__init__.py").read_text()
    assert run("git", "add", "-A", cwd=project).returncode == 0

    passing = run("pre-commit", "run", "--all-files", cwd=project)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "Passed" in passing.stdout

    # a commit through the installed git hook goes through as well
    assert run("pre-commit", "install", cwd=project).returncode == 0
    commit = run("git", "commit", "-q", "-m", "register qwen2", cwd=project)
    assert commit.returncode == 0, commit.stdout + commit.stderr


def test_fix_hook_registers_and_reports_the_change(house, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    models = house(registered=("llama",), extra=("mistral",), root=project)
    (project / "pyproject.toml").write_text('[tool.codegen]\nmodels = ["models"]\n')
    config = {"repos": [{"repo": "local", "hooks": shipped_hooks()}]}
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run("git", "init", "-q", cwd=project)
    run("git", "add", "-A", cwd=project)

    first = run(
        "pre-commit", "run", "codegen-fix", "--all-files", "--hook-stage", "manual", cwd=project
    )
    assert first.returncode == 1  # pre-commit fails a hook that modified files
    assert "files were modified by this hook" in first.stdout
    assert '"mistral": "mistral.spec:SPEC"' in (models / "__init__.py").read_text()
    run("git", "add", "-A", cwd=project)
    second = run(
        "pre-commit", "run", "codegen-fix", "--all-files", "--hook-stage", "manual", cwd=project
    )
    assert second.returncode == 0, second.stdout
