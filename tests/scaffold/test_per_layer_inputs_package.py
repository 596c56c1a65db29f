"""End to end: a decoder whose layers each take an input of their own (transformers' gemma4
text model: per-layer embeddings mixed with a projection of the embeddings, gating each
layer's addition), planned from its analysis, scaffolded and verified against the installed
transformers model, in both settings of the switch that builds them. Seeded defects, each a
slip of the per-layer path, fail verify and name the module where it lives."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_toy, write_planned
from codegen.verify.run import Case
from codegen.verify.tiny_config import tiny_config

TARGET = "gemma4_text"


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert "per_layer_inputs" in {step.rule for step in plan.steps}
    return target, plan


def test_package_verifies_in_both_settings_of_the_switch(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned)
    results = verify_toy(models, name, ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    # the config class refuses None; 0 switches the per-layer inputs off as well
    off = Case(
        f"{TARGET}+hidden_size_per_layer_input=0",
        tiny_config(TARGET, hidden_size_per_layer_input=0),
    )
    results = verify_toy(models, name, ("fp32", "bf16"), off)
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    spec = load_spec(name, models)
    assert not spec.args.from_hf_config(off.config).per_layer_dim


def test_package_without_the_rule_fails_on_the_per_layer_keys(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="per_layer_inputs")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert any("per_layer" in key for key in result.unexpected_keys), result.unexpected_keys


def test_dropped_per_layer_addition_fails_in_the_first_layer(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, "out = out + self.per_layer_norm(self.per_layer_up(gated))", "pass")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.first_divergence.startswith(
        "layers.0.per_layer_up, layers.0.per_layer_norm (HF model.layers.0.per_layer_projection,"
        " model.layers.0.post_per_layer_input_norm): never run"
    ), result.first_divergence


def test_unscaled_mix_fails(tmp_path, planned):
    """The per-layer inputs summed without their 1/sqrt(2). The layer's norm after the up
    projection takes most of a uniform factor back out (all but its epsilon), so the logits
    move by about 1e-4 only: still beyond the calibrated bound."""
    models, name = write_planned(tmp_path / "models", planned)
    seed(
        models,
        name,
        "return (projected + table.view(shape)) * 2.0**-0.5",
        "return projected + table.view(shape)",
    )
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.first_divergence.startswith("layers."), result.first_divergence


def test_unscaled_table_fails_in_the_first_layer(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned)
    seed(
        models,
        name,
        "table = table * torch.tensor(self.args.per_layer_dim**0.5, dtype=table.dtype)",
        "pass",
    )
    (result,) = verify_toy(models, name)
    assert not result.passed
    # the table's rows reach the layers through the block's own addition: layer 0's
    # projection of its gated slice is the first part given another input
    assert result.first_divergence.startswith(
        "layers.0.per_layer_up (HF model.layers.0.per_layer_projection) reads another input"
    ), result.first_divergence
