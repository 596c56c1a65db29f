"""End to end: a decoder whose sliding-window layers are built with twice the kv heads and
with attention sinks, whose value heads are narrower than its query/key heads and whose
values are scaled by a config factor (transformers' mimo_v2_flash), planned from its
analysis, scaffolded and verified against the installed transformers model. Seeded defects,
each the slip a new rule exists to prevent, fail verify and name the module where it
lives."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import verify_toy, write_planned
from codegen.verify.cases import default_cases

TARGET = "mimo_v2_flash"
RULES = {"value_head_dim", "value_scale", "layer_sinks", "layer_attention_sizes_rule"}


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert RULES <= {step.rule for step in plan.steps}
    return target, plan


def _case(spec):
    return default_cases(spec, switches=False)[0]


def _sliding(spec) -> list[int]:
    types = _case(spec).config.layer_types
    return [i for i, t in enumerate(types) if t == "sliding_attention"]


def test_package_builds_each_layer_as_hf_and_verifies(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned)
    results = verify_toy(models, name, ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    spec = load_spec(name, models)
    config = _case(spec).config
    args = spec.args.from_hf_config(config)
    sliding = _sliding(spec)
    assert sliding and len(sliding) < args.n_layers  # the toy keeps both kinds of layer
    kv = config.num_key_value_heads
    assert args.layer_n_kv_heads == tuple(
        2 * kv if i in sliding else kv for i in range(args.n_layers)
    )
    assert args.sink_layers == tuple(sliding)
    assert args.v_head_dim == config.v_head_dim != args.head_dim
    assert args.v_scale == config.attention_value_scale != 1.0


def test_values_left_unscaled_fail_in_the_first_attention(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="value_scale")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention"), result.first_divergence


def test_sinks_on_every_layer_fail_naming_a_layer_without_them(tmp_path, planned):
    """Sinks built on the full-attention layers too (gpt_oss's all-layer rule): the package
    holds sink tensors HF's full layers do not have; verify names each of them, and the
    first full layer's attention as where the forward parts."""
    models, name = write_planned(tmp_path / "models", planned, without="layer_sinks")
    spec = load_spec(name, models)
    (result,) = verify_toy(models, name)
    assert not result.passed
    full = [i for i in range(_case(spec).config.num_hidden_layers) if i not in _sliding(spec)]
    assert result.missing_keys == [f"layers.{i}.attention.sinks" for i in full], result
    # the attention pairs with HF's by the weights it did load, so the search names it
    assert result.first_divergence.startswith(f"layers.{full[0]}.attention "), result
    assert not result.lifecycle_ok and "layers.0.attention.sinks" in result.lifecycle_failure


def test_values_sized_like_keys_fail_naming_the_attention(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="value_head_dim")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert "layers.0.attention.wv" in (result.error or ""), result.error


def test_sliding_layers_sized_like_full_ones_fail_at_the_first_sliding_layer(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="layer_attention_sizes_rule")
    spec = load_spec(name, models)
    (result,) = verify_toy(models, name)
    assert not result.passed
    first = _sliding(spec)[0]
    assert f"layers.{first}.attention.wk" in (result.error or ""), result.error
    assert "layers.0.attention" not in (result.error or ""), result.error
