"""A RoPE base read per layer from a config list (`rope.layer_bases`) on a renamed copy
whose field is renamed too: the analysis records the list and the base each entry replaces,
with evidence; the package built from the copy refuses a config whose entries differ in one
line naming the field (it rotates every layer with one base), accepts a list of that one
base, and still verifies on the toy config. Without the step the package loads differing
bases and computes another model from the second layer on."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from layer_bases_fixture import FIELD, NAME, layer_bases_folder

from codegen.scaffold.testing import plan_folder, verify_folder, write_planned

BASE = "rope_parameters.rope_theta"
DIFFERING = [10000.0, 500000.0, 10000.0, 500000.0]  # the toy has 4 layers


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return layer_bases_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, rules=("uniform_layer_bases",))
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


def test_differing_bases_are_refused_in_one_line(built, folder):
    with pytest.raises(NotImplementedError) as refused:
        _from_hf_config(built, folder, DIFFERING)
    message = str(refused.value)
    assert "\n" not in message and f"{FIELD}=[10000.0, 500000.0" in message
    assert f"{BASE}=10000.0" in message


def test_a_list_of_the_one_base_is_accepted(built, folder):
    assert _from_hf_config(built, folder, [10000.0] * 4).rope.theta == 10000.0
    assert _from_hf_config(built, folder, None).rope.theta == 10000.0


def test_package_verifies_on_the_toy_config(built, folder, capsys):
    rows = verify_folder(folder, built, capsys, switches=False)
    assert rows and all(row["status"] == "pass" for row in rows), rows


def test_without_the_step_differing_bases_compute_another_model(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned, without="uniform_layer_bases")
    differing = shutil.copytree(folder, tmp_path / "hub" / NAME)
    config = json.loads((differing / "config.json").read_text())
    config[FIELD] = DIFFERING
    (differing / "config.json").write_text(json.dumps(config))
    options = ("--dtype", "fp32")
    (row,) = verify_folder(differing, models, capsys, *options, dtypes=(), switches=False)
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.1.attention"), row
