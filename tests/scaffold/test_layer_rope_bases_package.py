"""A RoPE base read per layer from a config list (`rope.layer_bases`) on a renamed copy
whose field is renamed too: the analysis records the list and the base each entry replaces,
with evidence; the package built from the copy takes the list in `from_hf_config` (the one
base on every layer where the config gives none) and verifies with differing bases and a 0
(NoPE) on a layer. A package that rotates every layer with the one base fails at the first
layer whose base differs; one that rotates a 0 layer anyway fails at that layer."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from layer_bases_fixture import FIELD, NAME, layer_bases_folder

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

BASE = "rope_parameters.rope_theta"
# the toy has 4 layers: layer 1 turns at another base, layer 2 applies no RoPE
DIFFERING = [10000.0, 500000.0, 0, 10000.0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return layer_bases_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def differing(tmp_path_factory, folder) -> Path:
    """The copy with DIFFERING in its config.json."""
    copy = shutil.copytree(folder, tmp_path_factory.mktemp("differing") / NAME)
    config = json.loads((copy / "config.json").read_text())
    config[FIELD] = DIFFERING
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, rules=("layer_rope_bases",))
    assert target.features.rope.layer_bases == {"field": FIELD, "base": BASE}
    assert f"config:{FIELD}" in target.features.evidence["rope.layer_bases"]
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _from_hf_config(models: Path, folder: Path, bases):
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    setattr(hf_config, FIELD, bases)
    sys.path.insert(0, str(models))
    try:
        args = importlib.import_module(f"{NAME}.args")
    finally:
        sys.path.remove(str(models))
    return args.ModelArgs.from_hf_config(hf_config)


def test_the_args_take_the_list_and_default_to_the_one_base(built, folder):
    assert _from_hf_config(built, folder, DIFFERING).layer_rope_bases == tuple(DIFFERING)
    assert _from_hf_config(built, folder, None).layer_rope_bases == (10000.0,) * 4


def test_package_is_ruff_clean(built):
    from codegen.quality.style import package_checks

    assert package_checks(built / NAME)["ruff_check"] == []


def test_package_verifies_on_the_toy_config(built, folder, capsys):
    rows = verify_folder(folder, built, capsys, dtypes=(), switches=False)
    assert rows and all(row["status"] == "pass" for row in rows), rows


def test_package_verifies_with_differing_bases_and_a_nope_layer(built, differing, capsys):
    rows = verify_folder(differing, built, capsys, dtypes=(), switches=False)
    assert rows and all(row["status"] == "pass" for row in rows), rows


def _fails_at(models: Path, differing: Path, capsys) -> str:
    (row,) = verify_folder(differing, models, capsys, switches=False)
    assert row["status"] == "fail", row
    return row.get("first_divergence") or ""


def test_one_base_for_every_layer_fails_at_the_first_that_differs(
    tmp_path, planned, differing, capsys
):
    models, _ = write_planned(tmp_path / "models", planned, without="layer_rope_bases")
    assert _fails_at(models, differing, capsys).startswith("layers.1.attention")


def test_a_nope_layer_rotated_anyway_fails_at_that_layer(tmp_path, built, differing, capsys):
    models = seeded_copy(built, tmp_path / "models", NAME, "0: None}", "0: rope}")
    assert _fails_at(models, differing, capsys).startswith("layers.2.attention")


def test_a_config_with_a_nope_entry_plans_its_nope_layer_from_the_list(differing):
    """A 0 in the folder's own list: the layer that rotates nothing is restated as the
    list's entry (before, no guard was found and the plan stopped at `nope_layers`)."""
    target, _ = plan_folder(differing, rules=("layer_rope_bases", "nope_layers"))
    assert target.features.rope.nope_rule == f"hf_config.{FIELD}[i]"
