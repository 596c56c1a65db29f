"""End to end: gemma3n's per-layer inputs (a second token table mixed with a projection of the
embeddings, each layer gating AltUp's corrected active stream with its slice and adding the
result to every stream after the first), planned from its analysis, scaffolded and verified
against the folder's own code in fp32 and bf16, with `altup_correct_scale` swept (the gate
reads the active stream times AltUp's output scale, or as it is). Seeded defects, each a slip
of that form, fail verify and name the module where it lives.

The HF side is `gemma3n_fixture`'s renamed folder with Laurel alone taken out."""

from __future__ import annotations

from pathlib import Path

import pytest
from gemma3n_fixture import NAME, derive

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive(tmp_path_factory.mktemp("hub"), per_layer=True)


@pytest.fixture(scope="module")
def package(tmp_path_factory, folder) -> Path:
    target, plan = plan_folder(folder)
    assert {"altup", "per_layer_inputs"} <= {step.rule for step in plan.steps}
    found = target.features.block.per_layer_input
    assert (found["into"], found["correct_scale"]) == ("streams", "altup_correct_scale")
    # HF's scales are scalar buffers, rounded to the embeddings' dtype
    assert (found["projection_scale"], found["mix_scale_dtype"]) == ("rsqrt_dim_dtype", True)
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", (target, plan))
    return models


def _verify(folder: Path, models: Path, capsys, *extra: str) -> list[dict]:
    return verify_folder(folder, models, capsys, *extra, dtypes=())


def test_package_verifies_in_fp32_and_bf16_with_the_scale_switched(folder, package, capsys):
    rows = _verify(folder, package, capsys, "--dtype", "fp32", "--dtype", "bf16")
    assert rows and all(row["status"] == "pass" for row in rows), rows
    # the toy sets altup_correct_scale; verify runs the other setting too
    assert any("altup_correct_scale=False" in row["case"] for row in rows), rows


@pytest.mark.parametrize(
    "old, new, stage",
    [
        # the per-layer addition into the first stream instead of the others
        (
            "out[1:] += self.per_layer_norm",
            "out[:1] += self.per_layer_norm",
            "layers.0 (HF model.layers.0)",
        ),
        # the gate reads the active stream without AltUp's output scale
        (
            "active = active * self.altup.output_scale",
            "active = active",
            "layers.0.per_layer_gate (HF model.layers.0.per_layer_input_gate) reads another input",
        ),
        # the projection built from the streams rather than the embeddings: the first module
        # reading the mixed inputs is named (the projection itself computes right)
        (
            "self.per_layer_inputs(tokens, h)",
            "self.per_layer_inputs(tokens, streams[1])",
            "layers.0.per_layer_up (HF model.layers.0.per_layer_projection) reads another input",
        ),
    ],
    ids=["into_stream_0", "unscaled_gate", "projection_of_streams"],
)
def test_slips_fail_naming_their_module(tmp_path, folder, package, capsys, old, new, stage):
    models = seeded_copy(package, tmp_path / "models", NAME, old, new)
    rows = [
        row for row in _verify(folder, models, capsys, "--dtype", "fp32") if "+" not in row["case"]
    ]
    (row,) = rows
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(stage), row


def test_unrounded_projection_scale_fails_in_bf16(tmp_path, folder, package, capsys):
    """HF's projection scale is a buffer rounded to bf16: the Python number is another model."""
    models = seeded_copy(
        package,
        tmp_path / "models",
        NAME,
        "torch.tensor(self.args.dim**-0.5, dtype=h.dtype)",
        "self.args.dim**-0.5",
    )
    rows = _verify(folder, models, capsys, "--dtype", "bf16")
    assert any(row["status"] == "fail" for row in rows), rows


def test_shard_plan_replicates_the_per_layer_parts(folder, package, capsys):
    """tp=2: the per-layer table, projection and gates replicated, beside AltUp's."""
    rows = _verify(folder, package, capsys, "--parallel", "tp=2")
    assert rows and all(row["status"] == "pass" for row in rows), rows
