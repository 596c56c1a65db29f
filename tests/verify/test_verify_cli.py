"""`codegen verify` from the command line: output, JSON shape, exit codes, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from codegen.cli import main
from codegen.models import references_dir
from codegen.verify.tiny_config import tiny_config

JSON_KEYS = {
    "model",
    "passed",
    "dtype",
    "cosine",
    "max_abs_diff",
    "missing_keys",
    "unexpected_keys",
    "roundtrip_exact",
    "first_divergence",
}


def test_human_output_is_a_line_per_case_then_one_per_model_and_dtype(capsys, monkeypatch):
    from references.llama import args

    # a package that pins tied embeddings off, as a package may for a setting it lacks
    monkeypatch.setitem(args.FIXED_SETTINGS, "tie_word_embeddings", False)
    assert main(["verify", "llama"]) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith("  .. ")]
    assert progress[0].startswith("  .. llama llama: fp32:pass bf16:pass (")
    assert any("llama+tie_word_embeddings=True: fp32:refused bf16:refused" in p for p in progress)
    summary = [line for line in lines if not line.startswith(" ")]
    assert [line.split()[:3] for line in summary] == [
        ["PASS", "llama", "fp32"],
        ["PASS", "llama", "bf16"],
    ]
    assert "cos=" in summary[0] and "max_diff=" in summary[0] and "refused=" in summary[0]
    refusals = [line for line in lines if line.startswith("      llama+tie_word_embeddings=True")]
    assert refusals and "refused: LlamaConfig.tie_word_embeddings=True" in refusals[0]


def test_torch_dtype_names_are_accepted(capsys):
    assert main(["verify", "llama", "--dtype", "float32", "--dtype", "bfloat16", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["dtype"] for row in rows} == {"fp32", "bf16"}


def test_json_output(capsys):
    assert main(["verify", "llama", "--dtype", "fp32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(JSON_KEYS <= set(row) for row in rows)
    assert {row["dtype"] for row in rows} == {"fp32"}
    assert all(row["status"] in ("pass", "refused") for row in rows)
    assert all(row["relative_diff"] <= row["bound"] for row in rows if row["passed"])


def test_exact_config_file(tmp_path, capsys):
    config = tiny_config("llama")
    config.num_hidden_layers = 1
    path = tmp_path / "config.json"
    config.to_json_file(path)
    assert main(["verify", "llama", "--config", str(path), "--dtype", "fp32", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["case"] == "llama:config.json"


def test_shrink_config_keeps_a_real_layer_pattern(tmp_path, capsys):
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=40, hidden_size=1024).to_json_file(tmp_path / "config.json")
    args = ["verify", "llama", "--shrink-config", str(tmp_path / "config.json"), "--json"]
    assert main(args + ["--dtype", "fp32"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["passed"]


def test_unknown_model_is_one_line_exit_2(capsys):
    assert main(["verify", "no_such_model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'no_such_model'" in err[0]


def test_bad_config_files_are_one_line_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"model_type": "llama",\n  oops}')
    no_type = tmp_path / "no_type.json"
    no_type.write_text("{}")
    for path, message in [
        (tmp_path / "missing.json", "config file not found"),
        (broken, "invalid JSON"),
        (no_type, "no model_type"),
    ]:
        assert main(["verify", "llama", "--config", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and str(path) in err[0]


@pytest.mark.parametrize("option", ["--config", "--shrink-config"])
def test_a_config_its_class_rejects_is_one_line_exit_2(tmp_path, capsys, option):
    rejected = tmp_path / "config.json"
    rejected.write_text('{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 5}')
    assert main(["verify", "llama", option, str(rejected)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(rejected) in err[0]
    assert "LlamaConfig rejects this config" in err[0] and "(64)" in err[0]


def test_failing_package_exits_1_and_names_the_divergence(tmp_path, capsys):
    """A models dir of its own (--models) with a llama whose adapter swaps gate and up."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(references_dir() / "llama", models / "llama")
    (models / "__init__.py").write_text('MODEL_SPECS = {"llama": "llama.spec:SPEC"}\n')
    adapter = models / "llama" / "state_dict_adapter.py"
    text = adapter.read_text().replace("mlp.gate_proj.weight", "SWAP")
    text = text.replace("mlp.up_proj.weight", "mlp.gate_proj.weight")
    text = text.replace("SWAP", "mlp.up_proj.weight")
    adapter.write_text(text)
    assert main(["verify", "llama", "--models", str(models), "--dtype", "fp32"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("  .. llama llama: fp32:fail")  # progress, a line per case
    assert "\nFAIL  llama" in out
    assert "first divergence: layers.0.feed_forward" in out


def test_console_script_has_no_traceback_on_error():
    done = subprocess.run(
        [sys.executable, "-m", "codegen.cli", "verify", "nope"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_dtype_order_does_not_matter(capsys):
    """bf16 first must not leave rounded weights behind for the fp32 comparison."""
    assert main(["verify", "llama", "--dtype", "bf16", "--dtype", "fp32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    fp32 = [row for row in rows if row["dtype"] == "fp32" and row["status"] == "pass"]
    assert fp32 and all(row["max_abs_diff"] <= 1e-4 for row in fp32)
