"""End to end: a decoder whose full-attention layers take a head size of their own (the
config's `per_layer_config`), weightless value norms and a stored per-layer output scale
(transformers' gemma4_unified text model), planned from its analysis,
scaffolded and verified against the installed transformers model. Seeded defects, each a bug
of the class a new rule realises, fail verify and name the module where it lives."""

from __future__ import annotations

import re

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import verify_toy, write_planned
from codegen.verify.cases import default_cases

TARGET = "gemma4_unified_text"
RULES = {"value_norm", "layer_attention_sizes", "layer_output_scale"}


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert RULES <= {step.rule for step in plan.steps}
    return target, plan


def test_package_reads_each_layers_sizes_and_verifies(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned)
    results = verify_toy(models, name, ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    spec = load_spec(name, models)
    args = spec.args.from_hf_config(default_cases(spec, switches=False)[0].config)
    assert args.layer_head_dims == (40, 40, 40, 40, 40, 80)  # the toy's full layer: its own
    assert args.layer_n_kv_heads == (args.n_kv_heads,) * 6


def test_dropped_value_norm_fails_in_the_attention(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="value_norm")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention "), result.first_divergence


def test_full_layers_rotated_with_the_sliding_width_fail_at_the_first_full_layer(tmp_path, planned):
    """The classic per-layer-size slip: the full-attention layers' RoPE table built as wide
    as the sliding layers' heads. Every tensor loads (the table is no checkpoint key); only
    the numbers show it, at layer 5, the first full-attention layer of the toy."""
    models, name = write_planned(tmp_path / "models", planned)
    path = models / name / "model.py"
    source = path.read_text()
    wrong = re.sub(r'head_dims\.get\("full_attention", args\.head_dim\)', "args.head_dim", source)
    assert wrong != source
    path.write_text(wrong)
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.first_divergence.startswith("layers.5"), result.first_divergence


def test_dropped_output_scale_fails(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="layer_output_scale")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert any(key.endswith(".layer_scalar") for key in result.unexpected_keys)
    assert result.first_divergence.startswith("layers.0 "), result.first_divergence


def test_full_layers_built_with_the_sliding_head_size_fail_naming_the_layer(tmp_path, planned):
    """Every attention built with the global head size (the sliding layers'): the full
    layers' checkpoint tensors do not fit, and verify names them, not a generic error."""
    models, name = write_planned(tmp_path / "models", planned)
    path = models / name / "model.py"
    source = path.read_text()
    wrong = source.replace(
        "self.head_dim = args.layer_head_dims[layer_id]", "self.head_dim = args.head_dim"
    )
    assert wrong != source
    path.write_text(wrong)
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert "layers.5.attention" in (result.error or ""), result.error
