"""End to end: Inkling-2's full-attention layers with their key and value inputs of their own
(`inkling2_full_fixture` with `own_inputs`: the layer's input through the key and value
input norms, beside the queries'), planned from the analysis, scaffolded and verified against
the folder's own code in fp32, bf16 and on tp=2. Seeded defects, each a wrong input of the
full layers' keys or values, fail verify and name the full layer's attention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inkling2_full_fixture import derive_full

from codegen.cli import main
from codegen.scaffold.testing import plan_folder, seed, write_planned

pytest.importorskip("transformers.models.inkling2")

NAME = "quillful"
FULL_LAYER = "layers.5.attention"  # the toy's one full-attention layer


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive_full(tmp_path_factory.mktemp("hub"), NAME, own_inputs=True)


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, rules=("log_scaled_layers", "layer_kv_inputs"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _verify(folder: Path, models: Path, capsys, dtypes=("fp32",), extra=()) -> list[dict]:
    """verify --json's rows of the base case (the toy config as the folder gives it)."""
    capsys.readouterr()
    args = ["verify", str(folder), "--models", str(models), "--trust-remote-code", "--json"]
    main([*args, *(a for d in dtypes for a in ("--dtype", d)), *extra])
    rows = json.loads(capsys.readouterr().out)
    return [row for row in rows if "+" not in row["case"]]


def test_package_verifies_in_fp32_and_bf16(folder, built, capsys):
    model = (built / NAME / "model.py").read_text()
    assert "self.query_norm(x), hidden, log_scale, self.key_norm(x), self.value_norm(x)" in model
    rows = _verify(folder, built, capsys, ("fp32", "bf16"))
    assert rows and all(row["status"] == "pass" for row in rows), rows


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the keys read the queries' norm (the one norm the sliding layers have)
        ("self.key_norm(x), self.value_norm(x)", "self.query_norm(x), self.value_norm(x)"),
        # the key projection reads the queries' input
        ("self.wk(xk)", "self.wk(x)"),
        # the values read the keys' input
        ("self.wv(xv)", "self.wv(xk)"),
    ],
)
def test_seeded_defects_fail_and_name_the_module(tmp_path, folder, built, capsys, old, new):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(built, models)
    seed(models, NAME, old, new)
    (row,) = _verify(folder, models, capsys)
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(FULL_LAYER), (row.get("error"), row)


def test_shard_plan_passes_on_tp2(folder, built, capsys):
    """tp=2: the full layers' three norms are whole on every rank, as the attention norm."""
    (row,) = _verify(folder, built, capsys, extra=("--parallel", "tp=2"))
    assert row["status"] == "pass", row
