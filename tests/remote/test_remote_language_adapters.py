"""X-MOD's language adapters on a renamed remote-code folder whose adapter parts are renamed
too (the ModuleDict, its linears, the method running them, the switch attributes): the
package maps the folder's own keys and passes verify in fp32, every norm setting included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codegen.cli import main
from codegen.verify.remote_fixture import remote_folder

RENAMES = (
    ("adapter_modules", "banks"),
    ("lang_adapter", "route"),
    ("ZorblaxAdapter", "ZorblaxSide"),
    ("dense1", "squeeze"),
    ("dense2", "expand"),
    ("self.ln_before_adapter", "self.late_residual"),
    ("self.adapter_reuse_layer_norm", "self.share_norm"),
    ("self.adapter_layer_norm", "self.side_norm"),
)


@pytest.mark.slow
def test_renamed_folder_with_renamed_adapters_verifies(tmp_path: Path, capsys):
    folder = remote_folder("xmod", tmp_path / "hub", name="zorblax")
    (modeling,) = folder.glob("modeling_*.py")
    text = modeling.read_text()
    for old, new in RENAMES:
        assert old in text, old
        text = text.replace(old, new)
    modeling.write_text(text)
    out = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(out)]) == 0
    table = (out / "zorblax" / "state_dict_adapter.py").read_text()
    assert '"roberta.encoder.layer.{}.output.banks.{*}.squeeze.weight"' in table
    assert '"roberta.encoder.layer.{}.output.side_norm.weight"' in table
    capsys.readouterr()
    main(
        ["verify", str(folder), "--models", str(out), "--trust-remote-code", "--dtype", "fp32"]
        + ["--json"]
    )
    rows = {
        row["case"].split("+", 1)[-1]: row["status"] for row in json.loads(capsys.readouterr().out)
    }
    for setting in (
        "adapter_layer_norm=True",
        "adapter_reuse_layer_norm=False",
        "ln_before_adapter=False",
    ):
        assert rows[setting] == "pass", rows
    assert [status for case, status in rows.items() if "=" not in case] == ["pass"], rows
