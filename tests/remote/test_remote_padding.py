"""The word table's padding row on renamed remote-code folders: the package builds it
exactly where the folder's own code does, and verify sees a package that drops it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codegen.cli import main
from codegen.verify.remote_fixture import remote_folder

TABLE = "nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)"


def _base_row(folder: Path, out: Path, capsys) -> dict:
    capsys.readouterr()
    main(
        ["verify", str(folder), "--models", str(out), "--trust-remote-code", "--dtype", "fp32"]
        + ["--json"]
    )
    rows = json.loads(capsys.readouterr().out)
    return next(row for row in rows if "+" not in row["case"])


def _folder(tmp_path: Path, name: str, edit=None) -> tuple[Path, Path]:
    folder = remote_folder("llama", tmp_path / "hub", name=name)
    config = json.loads((folder / "config.json").read_text())
    assert isinstance(config["pad_token_id"], int) and config["pad_token_id"] < config["vocab_size"]
    if edit is not None:
        (modeling,) = folder.glob("modeling_*.py")
        text = modeling.read_text()
        assert TABLE in text
        modeling.write_text(edit(text))
    out = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(out)]) == 0
    return folder, out


@pytest.mark.slow
def test_the_padding_row_follows_the_folders_code(tmp_path, capsys):
    folder, out = _folder(tmp_path, "zephpad")
    model = (out / "zephpad" / "model.py").read_text()
    assert "padding_idx=args.pad_token_id" in model
    assert _base_row(folder, out, capsys)["status"] == "pass"

    bare, bare_out = _folder(
        tmp_path / "bare",
        "zephbare",
        lambda text: text.replace(TABLE, "nn.Embedding(config.vocab_size, config.hidden_size)"),
    )
    package = bare_out / "zephbare"
    model = (package / "model.py").read_text()
    assert "nn.Embedding(args.vocab_size, args.dim)" in model
    assert "padding_idx=" not in model
    assert "pad_token_id" not in (package / "args.py").read_text()
    assert _base_row(bare, bare_out, capsys)["status"] == "pass"


@pytest.mark.slow
def test_a_package_that_drops_the_padding_row_fails_on_the_embedding(tmp_path, capsys):
    folder, out = _folder(tmp_path, "zephdrop")
    model = out / "zephdrop" / "model.py"
    text = model.read_text()
    model.write_text(text.replace(", padding_idx=args.pad_token_id", ""))
    row = _base_row(folder, out, capsys)
    assert row["status"] == "fail"
    assert row["gradients_match"] is False
    assert row["first_gradient_divergence"].startswith("model.embed_tokens.weight")
