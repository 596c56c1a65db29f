"""`codegen verify` of a package that cannot be imported: one line naming file and line.

The package is the user's code (generated, then edited): a syntax error or an exception at
import time is something they fix in their file, so it is reported like any user error,
never as a traceback through codegen's internals.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codegen.cli import main
from codegen.errors import CodegenError
from codegen.models import load_spec


@pytest.fixture
def models(tmp_path, capsys) -> Path:
    """A models package with a scaffolded llama package."""
    out = tmp_path / "models"
    assert main(["scaffold", "llama", "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def _break(path: Path, text: str) -> int:
    """Append `text` to `path`; the 1-based line where it starts."""
    old = path.read_text()
    path.write_text(old + text)
    return old.count("\n") + 1


CASES = {
    "syntax": ("def broken(:\n    pass\n", "syntax error"),
    "raises": ('raise RuntimeError("no GPU here")\n', "RuntimeError: no GPU here"),
    "missing import": ("import no_such_module_anywhere\n", "ModuleNotFoundError"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_model_py_is_one_line_naming_file_and_line(models, capsys, case) -> None:
    text, reason = CASES[case]
    model = models / "llama" / "model.py"
    line = _break(model, text)
    rc = main(["verify", "llama", "--models", str(models), "--dtype", "fp32"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"codegen: error: {model}:{line}: ")
    assert reason in err and "does not import" in err


def test_broken_models_package_init_is_one_line(models, capsys) -> None:
    init = models / "__init__.py"
    line = _break(init, "raise ValueError('half-edited registry')\n")
    rc = main(["verify", "llama", "--models", str(models), "--dtype", "fp32"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"codegen: error: {init}:{line}: the models package does not import")


def test_a_fixed_file_imports_in_the_same_process(models) -> None:
    """The failed import leaves nothing cached: after the fix, load_spec succeeds."""
    model = models / "llama" / "model.py"
    good = model.read_text()
    _break(model, "raise RuntimeError('transient')\n")
    with pytest.raises(CodegenError, match="transient"):
        load_spec("llama", models)
    model.write_text(good)
    assert load_spec("llama", models).name == "llama"


@pytest.mark.parametrize("option", ["--config", "--shrink-config"])
def test_config_of_another_model_type_is_refused_before_any_run(tmp_path, capsys, option):
    """A qwen2 config given to the llama package: one line saying so, exit 2, no parity run."""
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "qwen2",
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "num_hidden_layers": 2,
                "vocab_size": 256,
            }
        )
    )
    rc = main(["verify", "llama", option, str(config), "--dtype", "fp32"])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""  # nothing was run
    assert captured.err == (
        f"codegen: error: {config}: the config is for model_type 'qwen2', a different "
        "model_type than 'llama' supports (llama)\n"
    )
