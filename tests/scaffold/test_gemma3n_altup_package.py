"""End to end: gemma3n's AltUp (the residual stream kept as four streams: projections of the
embedding rescaled to its RMS, each layer run on the active stream's prediction and every
stream corrected from its output, the streams projected back, rescaled and averaged),
planned from its analysis, scaffolded and verified against the folder's own code, on the toy
whose active stream is neither the first nor the last. Seeded defects, each a slip of AltUp,
fail verify and name the stage where it lives (predict and correct are methods the layer
calls, so a slip there names the layer or the first part reading the prediction).

The HF side is `gemma3n_fixture`'s renamed folder with AltUp kept (Laurel and the per-layer
inputs still taken out; test_gemma3n_per_layer_package keeps the per-layer inputs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gemma3n_fixture import NAME, derive

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive(tmp_path_factory.mktemp("hub"), altup=True)


@pytest.fixture(scope="module")
def package(tmp_path_factory, folder) -> Path:
    target, plan = plan_folder(folder)
    assert "altup" in {step.rule for step in plan.steps}
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", (target, plan))
    return models


def _verify(folder: Path, models: Path, capsys, *extra: str) -> list[dict]:
    """verify --json's rows of the base case (the toy config as the folder gives it)."""
    return verify_folder(folder, models, capsys, *extra, dtypes=(), switches=False)


def test_package_verifies_in_fp32_and_bf16(folder, package, capsys):
    rows = _verify(folder, package, capsys, "--dtype", "fp32", "--dtype", "bf16")
    assert rows and all(row["status"] == "pass" for row in rows), rows


@pytest.mark.parametrize(
    "old, new, stage",
    [
        # the layer run on the first stream's prediction
        (
            "x = predictions[self.altup.active]",
            "x = predictions[0]",
            "layers.0.attention_norm (HF model.layers.0.input_layernorm) reads another input",
        ),
        # the prediction's coefficients read as (j, i) for (i, j)
        ("coefs.transpose(-1, -2))", "coefs)", "layers.0.attention_norm"),
        # the correction's coefficient weights transposed
        (
            "F.linear(self.route(out), weight)",
            "F.linear(self.route(out), weight.T)",
            "layers.0 (HF model.layers.0)",
        ),
        # the innovation over the first stream's prediction
        (
            "innovation = out - predictions[self.active]",
            "innovation = out - predictions[0]",
            "layers.0 (HF model.layers.0)",
        ),
        # the streams projected back without their rescaling to the first's RMS
        ("back = [rms_matched(project(s), target) for", "back = [project(s) for", "output head"),
        # the streams made without their rescaling to the embedding's RMS
        ("*(rms_matched(project(h), target) for", "*(project(h) for", "embedding"),
    ],
    ids=[
        "first_stream",
        "prediction_transposed",
        "correction_transposed",
        "innovation_0",
        "unembed_rms",
        "embed_rms",
    ],
)
def test_slips_fail_naming_their_stage(tmp_path, folder, package, capsys, old, new, stage):
    models = seeded_copy(package, tmp_path / "models", NAME, old, new)
    (row,) = _verify(folder, models, capsys, "--dtype", "fp32")
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(stage), row


def test_shard_plan_keeps_altup_whole(folder, package, capsys):
    """tp=2: AltUp's router and coefficients and the stream projections are replicated."""
    (row,) = _verify(folder, package, capsys, "--parallel", "tp=2")
    assert row["status"] == "pass", row


def test_another_correction_is_no_altup(tmp_path):
    """A correction weighted by the coefficients alone (no `+ 1.0`) is not AltUp's form:
    no fact, and the module stays named among the layer's unrealised parts."""
    folder = derive(tmp_path, altup=True)
    path = folder / f"modeling_{NAME}.py"
    old = "all_coefs = self.correction_coefs(modalities) + 1.0"
    assert path.read_text().count(old) == 1
    path.write_text(path.read_text().replace(old, "all_coefs = self.correction_coefs(modalities)"))
    plan = make_plan(load_target(str(folder)))
    assert "altup" not in {step.rule for step in plan.steps}
    assert any("altup (" in gap for gap in map(str, plan.gaps)), plan.gaps
