"""`codegen scaffold` from the command line: plan, dry run, write, register, refuse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import codegen
from codegen.cli import main

PROJECT = Path(codegen.__file__).resolve().parents[1]


def test_explain_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    assert main(["scaffold", "llama", "--explain", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("llama: from the llama reference")
    assert "complete" in out
    assert not any(tmp_path.iterdir())


def test_explain_json(capsys):
    assert main(["scaffold", "deepseek_v3", "--explain", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["reference"] == "deepseek_v3" and plan["complete"] and plan["gaps"] == []


def test_from_picks_another_reference(capsys):
    assert main(["scaffold", "qwen2", "--from", "llama", "--explain", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["reference"] == "llama"
    assert "attention.qkv_bias" in {gap["feature"] for gap in plan["gaps"]} | {
        rule["reason"].split(" =")[0] for rule in plan["rules"]
    }


def test_dry_run_prints_files_and_writes_nothing(tmp_path, capsys):
    assert main(["scaffold", "qwen2", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for filename in ("args.py", "model.py", "state_dict_adapter.py", "spec.py", "test_qwen2.py"):
        assert f"=== {tmp_path / 'qwen2' / filename}" in out
    assert not any(tmp_path.iterdir())


def test_scaffold_writes_registers_and_verifies(tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["scaffold", "qwen2", "--out", str(models)]) == 0
    files = sorted(p.name for p in (models / "qwen2").iterdir())
    assert files == sorted(
        ["__init__.py", "args.py", "model.py", "spec.py", "state_dict_adapter.py", "test_qwen2.py"]
    )
    assert '"qwen2": "qwen2.spec:SPEC"' in (models / "__init__.py").read_text()
    capsys.readouterr()
    assert main(["verify", "qwen2", "--models", str(models), "--dtype", "fp32"]) == 0
    assert capsys.readouterr().out.startswith("PASS  qwen2")
    assert main(["lint", "--models", str(models)]) == 0


def test_existing_package_is_never_overwritten_without_force(tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["scaffold", "llama", "--out", str(models)]) == 0
    marker = models / "llama" / "model.py"
    marker.write_text("# hand edits\n")
    capsys.readouterr()
    assert main(["scaffold", "llama", "--out", str(models)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert marker.read_text() == "# hand edits\n"
    assert main(["scaffold", "llama", "--out", str(models), "--force"]) == 0
    assert marker.read_text() != "# hand edits\n"
    registry = (models / "__init__.py").read_text()
    assert registry.count('"llama"') == 1  # registration is idempotent


def test_a_feature_without_a_rule_stops_before_writing(tmp_path, capsys):
    """Scaffolding mistral from qwen3_moe would need to remove the MoE: no rule does that."""
    models = tmp_path / "models"
    assert main(["scaffold", "mistral", "--from", "qwen3_moe", "--out", str(models)]) == 2
    err = capsys.readouterr().err
    assert "no rule realises" in err and "moe" in err and "nothing written" in err
    assert not models.exists()


def test_unknown_target_is_one_line_exit_2(capsys):
    assert main(["scaffold", "not_a_model_type"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_generated_package_is_ruff_clean_and_its_own_test_passes(tmp_path):
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    models = tmp_path / "models"
    assert main(["scaffold", "deepseek_v3", "--out", str(models)]) == 0
    package = models / "deepseek_v3"
    config = ["--config", str(PROJECT / "pyproject.toml")]  # the project's own ruff settings
    assert subprocess.run([ruff, "check", *config, str(package)]).returncode == 0
    assert subprocess.run([ruff, "format", "--check", *config, str(package)]).returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:]


def test_scaffold_is_static(tmp_path):
    """Planning and writing a package import neither torch nor transformers (only verify
    does): it is what keeps scaffold within its 2 s budget (scripts/bench_scaffold.py)."""
    code = (
        "import sys\n"
        "from codegen.cli import main\n"
        f"assert main(['scaffold', 'gpt_oss', '--out', {str(tmp_path / 'm')!r}]) == 0\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
