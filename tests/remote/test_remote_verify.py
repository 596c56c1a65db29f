"""Remote-code checkpoint folders end to end: `codegen scaffold FOLDER` then
`codegen verify FOLDER --trust-remote-code` (issue 9).

The folders are renamed copies of installed architectures built at test time
(`codegen.verify.remote_fixture`): the HF side is the folder's own code, loaded through
transformers' dynamic modules, never the installed class of the same architecture.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from codegen.cli import main
from codegen.models import load_spec
from codegen.verify.remote_fixture import neutral_name, remote_folder

# helium: its code cannot run head_dim != hidden/heads (the toy keeps it symmetric);
# gpt_neox: its base model prefix is renamed with it (keys pair by where the layers are)
ARCHITECTURES = ["llama", "qwen2", "qwen3", "mistral", "gemma2", "qwen3_moe", "mixtral"]
ARCHITECTURES += ["helium", "gpt_neox"]


def _scaffold(target: Path | str, out: Path, *extra: str) -> None:
    assert main(["scaffold", str(target), "--out", str(out), *extra]) == 0


def _verify(folder: Path, out: Path, *extra: str) -> int:
    return main(["verify", str(folder), "--models", str(out), "--dtype", "fp32", *extra])


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def _modeling(folder: Path) -> Path:
    (path,) = folder.glob("modeling_*.py")
    return path


def _rows(args: list[str], capsys) -> dict[str, dict]:
    """verify --json rows keyed by the case's switch setting ("" for the base case)."""
    capsys.readouterr()
    main(["verify", *args, "--dtype", "fp32", "--json"])
    rows = json.loads(capsys.readouterr().out)
    return {row["case"].partition("+")[2]: row for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_renamed_remote_folder_scaffolds_and_verifies(model_type, tmp_path, capsys) -> None:
    """The renamed remote-code copy verifies exactly as the architecture does by its own
    name: the base case passes, and every config switch setting gets the same verdict."""
    name = neutral_name(model_type)
    folder = remote_folder(model_type, tmp_path / "hub", name=name)
    out = tmp_path / "models"
    _scaffold(folder, out)
    spec = load_spec(name, out)
    assert spec.name == name and spec.supported_model_types == frozenset({name})
    remote = _rows([str(folder), "--models", str(out), "--trust-remote-code"], capsys)
    _scaffold(model_type, tmp_path / "by_name")
    by_name = _rows([model_type, "--models", str(tmp_path / "by_name")], capsys)
    assert remote[""]["model"] == name and remote[""]["status"] == "pass", remote[""]
    assert by_name[""]["status"] == "pass", by_name[""]
    verdicts = {setting: row["status"] for setting, row in remote.items()}
    assert verdicts == {setting: row["status"] for setting, row in by_name.items()}


def test_the_hf_side_is_the_folders_own_code(tmp_path, capsys) -> None:
    """A change to the folder's modeling code (and nothing else) makes verify fail."""
    folder = remote_folder("llama", tmp_path / "hub", name="zephteeth")
    out = tmp_path / "models"
    _scaffold(folder, out)
    modeling = _modeling(folder)
    text = modeling.read_text()
    assert "self.scaling = self.head_dim**-0.5" in text
    modeling.write_text(text.replace("self.head_dim**-0.5", "1.5 * self.head_dim**-0.5"))
    assert _verify(folder, out, "--trust-remote-code") == 1
    assert "FAIL  zephteeth" in capsys.readouterr().out


def _plant_marker(folder: Path, marker: Path) -> None:
    """The modeling file writes `marker` when it is imported."""
    modeling = _modeling(folder)
    planted = f"open({str(marker)!r}, 'w').close()\n"
    modeling.write_text(planted + modeling.read_text())


def test_without_the_flag_verify_says_so_in_one_line_and_runs_nothing(tmp_path, capsys) -> None:
    folder = remote_folder("llama", tmp_path / "hub", name="zephnoflag")
    out = tmp_path / "models"
    _scaffold(folder, out)
    marker = tmp_path / "executed"
    _plant_marker(folder, marker)
    capsys.readouterr()
    assert _verify(folder, out) == 2
    line = _error_line(capsys)
    assert "--trust-remote-code" in line and "explicit choice" in line
    assert not marker.exists()


def test_analyze_and_scaffold_never_run_the_folders_code(tmp_path, capsys) -> None:
    folder = remote_folder("qwen3", tmp_path / "hub", name="zephstatic")
    marker = tmp_path / "executed"
    _plant_marker(folder, marker)
    assert main(["analyze", str(folder)]) == 0
    _scaffold(folder, tmp_path / "models")
    assert not marker.exists()


def _broken(tmp_path: Path, name: str, edit) -> tuple[Path, Path]:
    """A scaffolded folder whose modeling code is then edited by `edit(text) -> text`."""
    folder = remote_folder("llama", tmp_path / "hub", name=name)
    out = tmp_path / "models"
    _scaffold(folder, out)
    modeling = _modeling(folder)
    modeling.write_text(edit(modeling.read_text()))
    return folder, out


def test_a_missing_module_is_named_in_one_line(tmp_path, capsys) -> None:
    folder, out = _broken(
        tmp_path, "zephmissing", lambda text: "import zz_codegen_missing_kernels\n" + text
    )
    capsys.readouterr()
    assert _verify(folder, out, "--trust-remote-code") == 2
    line = _error_line(capsys)
    assert "zz_codegen_missing_kernels" in line and "import failed" in line


def test_an_import_the_installed_transformers_lacks_is_named_with_its_line(
    tmp_path, capsys
) -> None:
    folder, out = _broken(
        tmp_path,
        "zepholdimport",
        lambda text: text.replace(
            "\nimport torch\n", "\nimport torch\nfrom transformers.utils import RemovedHelper\n", 1
        ),
    )
    lines = _modeling(folder).read_text().splitlines()
    lineno = lines.index("from transformers.utils import RemovedHelper") + 1
    capsys.readouterr()
    assert _verify(folder, out, "--trust-remote-code") == 2
    line = _error_line(capsys)
    assert "RemovedHelper" in line and "import failed" in line
    assert f"{_modeling(folder).name}:{lineno}:" in line


def test_a_call_the_installed_transformers_rejects_is_named_with_its_line(tmp_path, capsys) -> None:
    anchor = "self.scaling = self.head_dim**-0.5"
    folder, out = _broken(
        tmp_path,
        "zepholdcall",
        lambda text: text.replace(anchor, anchor + "; ACT2FN.legacy_lookup('gelu')"),
    )
    capsys.readouterr()
    assert _verify(folder, out, "--trust-remote-code") == 2
    line = _error_line(capsys)
    assert "call failed" in line and "legacy_lookup" in line
    assert re.search(rf"{_modeling(folder).name}:\d+", line)


def test_scaffold_names_the_package_from_an_unusual_model_type(tmp_path, capsys) -> None:
    folder = remote_folder("llama", tmp_path / "hub", name="Zeph-Coder")
    out = tmp_path / "models"
    _scaffold(folder, out)
    spec = load_spec("zeph_coder", out)
    assert spec.supported_model_types == frozenset({"Zeph-Coder"})
    assert main(["lint", "--models", str(out)]) == 0
    capsys.readouterr()
    assert _verify(folder, out, "--trust-remote-code") == 0  # found by its model_type
    assert "PASS  zeph_coder" in capsys.readouterr().out


def test_scaffold_and_verify_with_name(tmp_path, capsys) -> None:
    folder = remote_folder("llama", tmp_path / "hub", name="zephnamed")
    out = tmp_path / "models"
    _scaffold(folder, out, "--name", "house_zeph")
    assert load_spec("house_zeph", out).supported_model_types == frozenset({"zephnamed"})
    assert main(["register", "house_zeph", "--models", str(out), "--check"]) == 0
    capsys.readouterr()
    assert _verify(folder, out, "--trust-remote-code", "--name", "house_zeph") == 0
    assert "PASS  house_zeph" in capsys.readouterr().out
    assert main(["scaffold", str(folder), "--out", str(out), "--name", "not-a-name"]) == 2
    assert "not a Python identifier" in _error_line(capsys)


def test_the_fixture_is_a_remote_code_folder(tmp_path) -> None:
    folder = remote_folder("qwen3_moe", tmp_path, name="zephfix")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "zephfix"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_zephfix.ZephfixConfig",
        "AutoModelForCausalLM": "modeling_zephfix.ZephfixForCausalLM",
    }
    assert config["architectures"] == ["ZephfixForCausalLM"]
    text = (folder / "modeling_zephfix.py").read_text()
    assert "from transformers.modeling_utils import" in text
    assert "from .configuration_zephfix import ZephfixConfig" in text
    assert not re.search(r"^\s*from \.\.", text, re.M)  # no relative import leaves the folder
    assert "Qwen3Moe" not in text and "qwen3_moe" not in text
