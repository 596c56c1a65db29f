"""A router top-k read from a config field that is an int or a per-layer list
(`moe.layer_top_k`, hunyuan_v1_moe's `moe_topk`) on a renamed copy whose field and router
attribute are renamed too: the analysis records the field with its evidence, the package
built from the copy gives each MoE layer its own entry and verifies every switch setting
(the sweep runs a per-layer list), a list of another length is refused in one line naming
the package and the field; the expert count, of the same form, is taken per layer too.
Without the step the package cannot load a list at all."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from layer_top_k_fixture import FIELD, NAME, layer_top_k_folder

from codegen.scaffold.testing import plan_folder, verify_folder, write_planned

PER_LAYER = [1, 3, 2, 1]  # the toy has 4 layers and 16 experts


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return layer_top_k_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, rules=("moe_layer_top_k",))
    assert target.features.moe.layer_top_k == FIELD
    evidence = target.features.evidence["moe.layer_top_k"]
    assert evidence.startswith(f"modeling_{NAME}.py:") and f"config.{FIELD}[layer]" in evidence
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _with_list(folder: Path, dest: Path, top_ks) -> Path:
    copy = shutil.copytree(folder, dest / NAME)
    config = json.loads((copy / "config.json").read_text())
    config[FIELD] = top_ks
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def _args_module(models: Path):
    # the other per-layer copy's package has the same name: import this one afresh
    for key in [key for key in sys.modules if key.split(".")[0] == NAME]:
        del sys.modules[key]
    sys.path.insert(0, str(models))
    try:
        return importlib.import_module(f"{NAME}.args")
    finally:
        sys.path.remove(str(models))


def test_each_layer_takes_its_entry_and_every_setting_verifies(built, folder, capsys):
    rows = verify_folder(folder, built, capsys)
    assert rows and all(row["status"] in ("pass", "skipped") for row in rows), rows
    listed = [row for row in rows if f"+{FIELD}=[" in row["case"]]
    assert listed and all(row["status"] == "pass" for row in listed), rows


def test_a_per_layer_list_verifies(built, folder, tmp_path, capsys):
    listed = _with_list(folder, tmp_path, PER_LAYER)
    (row,) = verify_folder(listed, built, capsys, switches=False)
    assert row["status"] == "pass", row


def test_a_list_of_another_length_is_refused_in_one_line(built, folder):
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    setattr(hf_config, FIELD, [1, 2, 2, 2, 2])
    with pytest.raises(ValueError) as refused:
        _args_module(built).ModelArgs.from_hf_config(hf_config)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{NAME}: {FIELD}=[1, 2, 2, 2, 2]")
    assert "list of 4" in message


def test_an_expert_count_per_layer_is_taken_too(built, folder):
    """The copy's `num_experts` has the same form; `moe_layer_experts` gives each layer its
    entry (`test_layer_experts_package`), so the package takes a list (a config class typing
    it int refuses it first)."""
    from transformers import AutoConfig

    values = AutoConfig.from_pretrained(folder, trust_remote_code=True).to_dict()
    hf_config = SimpleNamespace(**{**values, "num_experts": [16, 8, 16, 8]})
    args = _args_module(built).ModelArgs.from_hf_config(hf_config)
    assert [args.experts_of(layer) for layer in range(4)] == [16, 8, 16, 8]


def test_without_the_step_a_list_fails(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned, without="moe_layer_top_k")
    listed = _with_list(folder, tmp_path / "hub", PER_LAYER)
    (row,) = verify_folder(listed, models, capsys, switches=False)
    assert row["status"] == "fail", row
