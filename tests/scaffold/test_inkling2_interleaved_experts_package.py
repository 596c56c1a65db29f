"""End to end: a checkpoint whose experts' fused gate/up tensor is stored with the gate and
up rows interleaved (inkling2_text's `mlp.experts.w13_weight`), which transformers'
conversion de-interleaves on load (`WeightConverter(..., operations=[Interleave(dim=1)])`)
and interleaves again on save. A renamed copy of transformers' inkling2 text decoder
(`inkling2_fixture`: its attention a plain one, its block attention residuals a plain
residual stream, its MoE kept) registers that conversion itself, the one way remote code
gets one; the analysis reads the registration statically (`state_dict.interleaved`), the
plan adds the adapter's `interleaved` table (`interleaved_tensors`), and the package
verifies in fp32 and bf16. The rows loaded as stored (the table emptied) fail verify and
name the experts; a checkpoint transformers saves loads through the adapter into HF's
module layout and saves back bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from inkling2_fixture import INTERLEAVED_NAME, inkling2_folder, interleaved_experts  # noqa: E402

pytest.importorskip("transformers.models.inkling2")

TABLE = 'interleaved = {"mlp.experts.w13_weight": 1}'


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    hub = tmp_path_factory.mktemp("hub")
    return interleaved_experts(inkling2_folder(hub, plain_residual=True, name=INTERLEAVED_NAME))


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder)
    state = target.features.state_dict
    assert state.interleaved == (("mlp.experts.w13_weight", 1),)
    assert "layers.{}.mlp.experts.w13_weight" in {
        f"{state.prefix}.{{}}.{key}".removeprefix("model.") for key in state.checkpoint_layer_keys
    }
    assert ("interleaved_tensors", {"tensors": state.interleaved}) in [
        (step.transform, step.params) for step in plan.steps
    ]
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> tuple[Path, str]:
    """The package, built once; the seeded defect edits a copy."""
    return write_planned(tmp_path_factory.mktemp("built") / "models", planned)


def test_package_verifies_in_fp32_and_bf16(folder, built, capsys):
    models, name = built
    assert TABLE in (models / name / "state_dict_adapter.py").read_text()
    rows = verify_folder(folder, models, capsys, dtypes=(), switches=False)
    assert len(rows) == 2 and all(row["status"] == "pass" for row in rows), rows


def test_rows_loaded_as_stored_fail_and_name_the_experts(tmp_path, folder, built, capsys):
    models = seeded_copy(
        built[0],
        tmp_path / "models",
        built[1],
        TABLE,
        "interleaved = {}",
        file="state_dict_adapter.py",
    )
    rows = verify_folder(folder, models, capsys, "--dtype", "fp32", dtypes=(), switches=False)
    (row,) = rows
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.0.moe.experts"), row


def test_a_checkpoint_transformers_saves_loads_and_saves_back(tmp_path, folder, built):
    """save_pretrained interleaves the experts' rows (the registered conversion reversed);
    the adapter gives HF's module tensor and `to_hf` the saved checkpoint, bit for bit."""
    from transformers import AutoConfig

    from codegen.models import load_spec
    from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = random_hf_model(config, 0)
    save_checkpoint(model, tmp_path)
    saved = load_checkpoint(tmp_path)
    fused = model.state_dict()["model.layers.0.mlp.experts.gate_up_proj"]
    stored = saved["model.layers.0.mlp.experts.w13_weight"]
    gate, up = fused.chunk(2, dim=1)
    assert torch.equal(stored[:, 0::2], gate) and torch.equal(stored[:, 1::2], up)
    _, _, adapter = load_spec(built[1], built[0]).build(config)
    house = adapter.from_hf(saved)
    assert torch.equal(house["layers.0.moe.experts.w13"], fused)
    back = adapter.to_hf(house)
    assert back.keys() == saved.keys()
    assert all(torch.equal(back[key], saved[key]) for key in saved)
