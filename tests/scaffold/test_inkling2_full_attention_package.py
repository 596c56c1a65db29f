"""End to end: Inkling-2's full-attention layers, planned from the analysis, scaffolded and
verified against the folder's own code: the full layers build an attention class of their
own (the sliding layers' attention with its queries and relative-position states times
1 + alpha * log(max((position + 1) / floor, 1))), chosen by the layer's type. Seeded defects,
each a bug of the class the scale brings, fail verify and name the full layer's attention.

The HF side is transformers' inkling2 text decoder as a renamed remote-code folder with both
layer classes kept (`inkling2_full_fixture`: what no rule realises yet taken out, among it
the full layers' input-dependent convolutions and key/value inputs of their own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inkling2_full_fixture import derive_full

from codegen.cli import main
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, write_planned

pytest.importorskip("transformers.models.inkling2")

NAME = "quillful"
FULL_LAYER = "layers.5.attention"  # the toy's one full-attention layer


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive_full(tmp_path_factory.mktemp("hub"), NAME)


@pytest.fixture(scope="module")
def planned(folder):
    target = load_target(str(folder))
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert "log_scaled_layers" in {step.rule for step in plan.steps}
    return target, plan


def _verify(folder: Path, models: Path, capsys, dtypes=("fp32",), extra=()) -> list[dict]:
    """verify --json's rows of the base case (the toy config as the folder gives it)."""
    capsys.readouterr()
    args = ["verify", str(folder), "--models", str(models), "--trust-remote-code", "--json"]
    main([*args, *(a for d in dtypes for a in ("--dtype", d)), *extra])
    rows = json.loads(capsys.readouterr().out)
    return [row for row in rows if "+" not in row["case"]]


def test_package_verifies_in_fp32_and_bf16(tmp_path, folder, planned, capsys):
    models, name = write_planned(tmp_path / "models", planned)
    model = (models / name / "model.py").read_text()
    assert "(Attention if self.sliding else LogScaledAttention)(args, layer_id)" in model
    rows = _verify(folder, models, capsys, ("fp32", "bf16"))
    assert rows and all(row["status"] == "pass" for row in rows), rows


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # the position offset dropped: the scale of position p read at p - 1
        ("((positions + 1).float()", "((positions).float()"),
        # the queries left unscaled
        ("q = (q.float() * log_scale[:, None, :, None]).to(q.dtype)", "q = q"),
        # the relative states left unscaled
        ("* log_scale[:, :, None, None]", "* 1.0"),
        # the token's index in place of its position (the toy's positions start at 5)
        (
            "((positions + 1).float()",
            "((torch.arange(tokens.shape[1], device=tokens.device)[None] + 1).float()",
        ),
    ],
)
def test_seeded_defects_fail_and_name_the_module(tmp_path, folder, planned, capsys, old, new):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, old, new)
    (row,) = _verify(folder, models, capsys)
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(FULL_LAYER), (row.get("error"), row)


def test_shard_plan_passes_on_tp2(tmp_path, folder, planned, capsys):
    """tp=2: the full layers' scale is per position, the same on every rank's heads."""
    models, _ = write_planned(tmp_path / "models", planned)
    (row,) = _verify(folder, models, capsys, extra=("--parallel", "tp=2"))
    assert row["status"] == "pass", row
