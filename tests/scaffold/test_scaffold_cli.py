"""`codegen scaffold` from the command line: plan, dry run, write, register, refuse."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import codegen
from codegen.cli import main
from codegen.verify.remote_fixture import neutral_name, remote_folder
from tests.remote.renamed_fields import rename_fields

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


def test_explain_lists_the_settings_the_package_refuses_as_gaps(capsys):
    """A switch the package does not realise is refused in from_hf_config; --explain says
    so before anything is written, with where the HF source branches on it."""
    assert main(["scaffold", "stablelm", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "  REFUSES qk_layernorm other than False: the package does not realise this" in out
    assert "(modeling_stablelm.py:" in out.split("REFUSES qk_layernorm", 1)[1].splitlines()[0]
    assert "setting(s) refused in from_hf_config" in out.splitlines()[-1]
    assert main(["scaffold", "stablelm", "--explain", "--json"]) == 0
    refused = json.loads(capsys.readouterr().out)["refused"]
    assert {"field": "qk_layernorm", "value": False} in [
        {k: item[k] for k in ("field", "value")} for item in refused
    ]


def test_from_picks_another_reference(capsys):
    assert main(["scaffold", "qwen2", "--from", "llama", "--explain", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["reference"] == "llama"
    # a rule's reason names its feature, after what kind of difference it is
    assert "attention.qkv_bias" in {gap["feature"] for gap in plan["gaps"]} | {
        rule["reason"].split(" =")[0].rsplit(": ", 1)[-1] for rule in plan["rules"]
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
        + ["parallelize.py"]  # the shard plan
        + ["adapter_base.py", "config_checks.py", "norm.py", "rope.py", "parallel.py"]  # shared
        + ["activations.py"]  # shared: the FFN follows the config's activation name
        + ["lifecycle.py", "packing.py"]  # shared: meta-device init, packed documents
    )
    assert '"qwen2": "qwen2.spec:SPEC"' in (models / "__init__.py").read_text()
    capsys.readouterr()
    assert main(["verify", "qwen2", "--models", str(models), "--dtype", "fp32"]) == 0
    assert "\nPASS  qwen2" in "\n" + capsys.readouterr().out
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
    """Scaffolding mistral from deepseek_v3 would need to turn MLA into grouped-query
    attention: no rule does that."""
    models = tmp_path / "models"
    assert main(["scaffold", "mistral", "--from", "deepseek_v3", "--out", str(models)]) == 2
    err = capsys.readouterr().err
    assert "no rule realises attention.kind = 'gqa'" in err and "nothing written" in err
    assert not models.exists()


def _width_chosen_in_code(tmp_path) -> str:
    """A renamed remote qwen3 whose config calls the FFN width `mlp_width` and whose MLP sizes
    itself `config.mlp_width or 4 * config.hidden_size`: a chosen value names no field, so the
    package still reads `intermediate_size`, which the folder's config does not have."""
    folder = rename_fields(
        remote_folder("qwen3", tmp_path, name=neutral_name("qwen3")),
        {"intermediate_size": "mlp_width"},
    )
    modeling = next(folder.glob("modeling_*.py"))
    text = modeling.read_text()
    assert text.count("config.mlp_width") == 1
    modeling.write_text(
        text.replace("config.mlp_width", "(config.mlp_width or 4 * config.hidden_size)")
    )
    return str(folder)


def test_a_config_field_the_target_lacks_stops_before_writing(tmp_path, capsys):
    """The package would read `hf_config.intermediate_size`, which the target's config does
    not have: scaffold refuses in one line, naming the field, its line and the fix, and
    writes nothing; --dry-run refuses alike and --explain lists the read."""
    target = _width_chosen_in_code(tmp_path)
    models = tmp_path / "models"
    assert main(["scaffold", target, "--out", str(models)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert "from_hf_config would read hf_config.intermediate_size (args.py:" in err
    assert "Config does not have" in err and "CONFIG_ALIASES" in err
    assert "nothing written" in err
    assert not models.exists()
    assert main(["scaffold", target, "--dry-run", "--out", str(models)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "hf_config.intermediate_size" in err
    assert main(["scaffold", target, "--explain", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [item["field"] for item in plan["missing_config_fields"]] == ["intermediate_size"]
    assert not plan["complete"]


def test_a_target_whose_config_has_every_read_field_still_scaffolds(tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["scaffold", "llama", "--out", str(models)]) == 0
    assert "hf_config.intermediate_size" in (models / "llama" / "args.py").read_text()


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


# -- bad --out, faults, --force, umask (issue 13) ---------------------------------------------


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (hidden ones too): file bytes, None for folders."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("codegen: error: "), err
    return err


def test_out_that_is_a_file_or_under_a_file_is_one_line(tmp_path, capsys):
    regular = tmp_path / "notes.txt"
    regular.write_text("keep me\n")
    assert main(["scaffold", "llama", "--out", str(regular)]) == 2
    assert f"{regular}: --out is not a directory" in _one_line(capsys)
    assert main(["scaffold", "llama", "--out", str(regular / "models" / "x")]) == 2
    assert f"{regular}: a parent of --out is not a directory" in _one_line(capsys)
    assert regular.read_text() == "keep me\n"
    assert _tree(tmp_path) == {"notes.txt": b"keep me\n"}


def test_out_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    """EACCES on the models folder (simulated: root ignores permission bits)."""
    import codegen.scaffold.write as write

    models = tmp_path / "models"
    models.mkdir()

    real_mkdir = os.mkdir

    def refuse(path, *args, **kwargs):
        if Path(path).parent == models:
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(write.os, "mkdir", refuse)
    assert main(["scaffold", "llama", "--out", str(models)]) == 2
    err = _one_line(capsys)
    assert f"{models}: cannot write: Permission denied; nothing changed" in err
    assert _tree(tmp_path) == {"models": None}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_read_only_folder_is_one_line(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    models.chmod(0o555)
    try:
        assert main(["scaffold", "llama", "--out", str(models)]) == 2
        assert "Permission denied" in _one_line(capsys)
    finally:
        models.chmod(0o755)
    assert _tree(models) == {}


def test_force_replaces_and_a_failed_registry_write_restores_everything(
    tmp_path, capsys, monkeypatch
):
    """--force over a registered package: on success the new files replace the old; when the
    registry write fails after the package was swapped in, the old package comes back."""
    import codegen.scaffold.write as write

    models = tmp_path / "models"
    assert main(["scaffold", "qwen2", "--out", str(models)]) == 0
    assert main(["scaffold", "llama", "--out", str(models)]) == 0
    (models / "llama" / "model.py").write_text("# hand edits\n")
    (models / "llama" / "notes.md").write_text("a file the generator does not write\n")
    capsys.readouterr()

    # a new name with a failing registry write: the package it wrote is removed again
    def broken(path, text):
        raise OSError(28, "No space left on device")

    before = _tree(tmp_path)
    monkeypatch.setattr(write, "write_atomic", broken)
    assert main(["scaffold", "llama", "--name", "mistral", "--out", str(models)]) == 2
    assert "No space left on device" in _one_line(capsys)
    assert _tree(tmp_path) == before

    # --force where the registry needs no change: the swap is the only write
    monkeypatch.undo()
    assert main(["scaffold", "llama", "--out", str(models), "--force"]) == 0
    assert not (models / "llama" / "notes.md").exists()
    assert (models / "llama" / "model.py").read_text() != "# hand edits\n"
    assert sorted(p.name for p in models.iterdir() if p.name.startswith(".")) == []


def test_force_with_registry_edit_failing_keeps_the_old_package(tmp_path, capsys, monkeypatch):
    """An existing, unregistered package replaced with --force: the registry write fails, so
    the old package is back, byte for byte, and the registry is unchanged."""
    import codegen.scaffold.write as write

    models = tmp_path / "models"
    assert main(["scaffold", "qwen2", "--out", str(models)]) == 0
    (models / "llama").mkdir()
    (models / "llama" / "model.py").write_text("# the old package\n")
    capsys.readouterr()
    before = _tree(tmp_path)

    def broken(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(write, "write_atomic", broken)
    assert main(["scaffold", "llama", "--out", str(models), "--force"]) == 1  # Ctrl-C
    assert capsys.readouterr().err.strip() == "Aborted."
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_generated_folders_and_files_respect_the_umask(tmp_path, capsys, umask):
    models = tmp_path / "models"
    old = os.umask(umask)
    try:
        assert main(["scaffold", "llama", "--out", str(models)]) == 0
    finally:
        os.umask(old)
    for folder in (models, models / "llama"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask, folder
    for path in [models / "__init__.py", *(models / "llama").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_two_models_into_one_out_keep_the_registry_sorted(tmp_path, capsys):
    """The second scaffold inserts in sorted order, so `codegen lint` passes."""
    models = tmp_path / "models"
    assert main(["scaffold", "qwen2", "--out", str(models)]) == 0
    assert main(["scaffold", "llama", "--out", str(models)]) == 0
    assert main(["scaffold", "qwen3", "--out", str(models)]) == 0
    text = (models / "__init__.py").read_text()
    assert text.index('"llama"') < text.index('"qwen2"') < text.index('"qwen3"')
    capsys.readouterr()
    assert main(["lint", "--models", str(models)]) == 0, capsys.readouterr().out


def test_readme_names_the_files_a_package_has(tmp_path, capsys):
    """README's command table lists the package's files; no promised file is missing."""
    readme = (PROJECT / "README.md").read_text().splitlines()
    row = next(line for line in readme if line.startswith("| `codegen scaffold NAME`"))
    listed = row.split("package (", 1)[1].split(";", 1)[0].split(")", 1)[0]
    words = {"state-dict adapter": "state_dict_adapter", "parity test": "test_llama"}
    promised = {words.get(n.strip(), n.strip()) + ".py" for n in listed.split(",")}
    assert main(["scaffold", "llama", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    written = {line.rsplit("/", 1)[1] for line in out.splitlines() if line.startswith("=== ")}
    assert promised == written - {"__init__.py"}
