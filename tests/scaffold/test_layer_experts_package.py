"""A router width, the routed experts, read from a config field that is an int or a per-layer
list (`moe.layer_experts`, hunyuan_v1_moe's `num_experts`) on a renamed copy whose field,
router attribute and top-k field are renamed too and whose experts module honours the list
(`layer_experts_fixture`; the installed code cannot build one): the analysis records the
field with its evidence, the package gives each MoE layer its own router width and expert
weights and verifies every switch setting (the sweep runs a per-layer list of it), a
per-layer list with a per-layer top-k verifies (each layer's top-k checked against its own
layer's count: top-k 4 where there are 8 experts beside 2 elsewhere is valid), ep=2 shards
each layer by its own count and the plan refuses an odd one in one line (a refused row, not a
failure), a list of another length is refused in one line. Without the
step, or with every layer sized by the first entry, a list fails."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from layer_experts_fixture import EXPERTS, NAME, TOP_K, layer_experts_folder

from codegen.scaffold.testing import (
    plan_folder,
    seeded_copy,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

COUNTS = [4, 6, 4, 6]  # the toy has 4 layers
TOP_KS = [1, 2, 3, 1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return layer_experts_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, rules=("moe_layer_experts", "moe_layer_top_k"))
    assert target.features.moe.layer_experts == EXPERTS
    evidence = target.features.evidence["moe.layer_experts"]
    assert evidence.startswith(f"modeling_{NAME}.py:") and f"config.{EXPERTS}[layer]" in evidence
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _with(folder: Path, dest: Path, **values) -> Path:
    copy = shutil.copytree(folder, dest / NAME)
    config = json.loads((copy / "config.json").read_text())
    config.update(values)
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


def test_every_setting_verifies_the_count_given_per_layer_too(built, folder, capsys):
    rows = verify_folder(folder, built, capsys)
    assert rows and all(row["status"] in ("pass", "skipped") for row in rows), rows
    listed = [row for row in rows if f"+{EXPERTS}=[" in row["case"]]
    assert listed and all(row["status"] == "pass" for row in listed), rows


def test_per_layer_counts_and_top_ks_verify(built, folder, tmp_path, capsys):
    listed = _with(folder, tmp_path, **{EXPERTS: COUNTS, TOP_K: TOP_KS})
    (row,) = verify_folder(listed, built, capsys, switches=False)
    assert row["status"] == "pass", row


def test_expert_parallel_shards_each_layer_by_its_count(built, folder, tmp_path):
    listed = _with(folder, tmp_path, **{EXPERTS: COUNTS, TOP_K: TOP_KS})
    result = verify_shard_plan(listed, built, NAME, "ep=2")
    assert result.status == "pass", result.line()


def test_expert_parallel_refuses_an_odd_count_in_one_line(built, folder, tmp_path):
    listed = _with(folder, tmp_path, **{EXPERTS: [4, 5, 4, 6]})
    result = verify_shard_plan(listed, built, NAME, "ep=2")
    assert result.status == "refused", result.line()  # the plan declines it: not a failure
    message = result.refused
    assert "\n" not in message and message.startswith("layers.1.moe.experts: 5 routed experts")
    assert "ep=2" in message


def test_each_layers_top_k_meets_its_own_count(built, folder, tmp_path, capsys):
    """Top-k 4 on the layers of 8 experts, 1 on those of 2: every layer's pair is valid though
    the largest top-k passes the smallest count."""
    listed = _with(folder, tmp_path, **{EXPERTS: [2, 8, 2, 8], TOP_K: [1, 4, 1, 4]})
    (row,) = verify_folder(listed, built, capsys, switches=False)
    assert row["status"] == "pass", row


def test_a_top_k_past_its_own_layers_count_is_refused_in_one_line(built, folder):
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    setattr(hf_config, EXPERTS, [2, 8, 2, 8])
    setattr(hf_config, TOP_K, [1, 4, 3, 4])
    with pytest.raises(ValueError) as refused:
        _args_module(built).ModelArgs.from_hf_config(hf_config)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{NAME}: layer 2: ")
    assert "3 > num_experts 2" in message


def test_a_list_of_another_length_is_refused_in_one_line(built, folder):
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    setattr(hf_config, EXPERTS, [4, 6, 4])
    with pytest.raises(ValueError) as refused:
        _args_module(built).ModelArgs.from_hf_config(hf_config)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{NAME}: {EXPERTS}=[4, 6, 4] has 3")
    assert "list of 4" in message


def test_every_layer_sized_by_the_first_count_fails(built, folder, tmp_path, capsys):
    models = seeded_copy(
        built,
        tmp_path / "models",
        NAME,
        "else self.num_experts[layer_id]",
        "else self.num_experts[0]",
        file="args.py",
    )
    listed = _with(folder, tmp_path / "hub", **{EXPERTS: COUNTS})
    (row,) = verify_folder(listed, models, capsys, switches=False)
    assert row["status"] == "fail", row
    assert "layers.1.moe" in json.dumps(row), row


def test_without_the_step_a_list_fails(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned, without="moe_layer_experts")
    listed = _with(folder, tmp_path / "hub", **{EXPERTS: COUNTS})
    (row,) = verify_folder(listed, models, capsys, switches=False)
    assert row["status"] == "fail", row
