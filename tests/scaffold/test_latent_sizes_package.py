"""End to end: latent attention (MLA) sized per layer (transformers' dots3_note text model:
its sliding-window layers take other head counts, kv latent rank and q/k head parts from the
config's `per_layer_config`), with an indexer on the other layers only, scaled latents, a
normed rope key and latent norms at the config's epsilon: planned from its analysis,
scaffolded and verified against the installed transformers model in fp32 and bf16 (the
indexed layers turn q/k in fp32, as HF's fp32 tables make them). Seeded defects,
each a bug of the class a new rule realises, fail verify and name the module."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import verify_toy, write_planned
from codegen.verify.cases import default_cases
from codegen.verify.parallel import plan_module, verify_parallel

TARGET = "dots3_note_text"
RULES = {
    "latent_layer_sizes",
    "indexed_attention",
    "latent_scale",
    "latent_norm_eps",
    "k_rope_norm",
    "moe_shared_width",
    "rope_fp32_layer_types",
}


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert RULES <= {step.rule for step in plan.steps}
    return target, plan


def test_package_sizes_each_layers_latent_attention_and_verifies(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned)
    results = verify_toy(models, name, ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    spec = load_spec(name, models)
    args = spec.args.from_hf_config(default_cases(spec, switches=False)[0].config)
    # the toy: layers 0-1 indexed (the config's sizes), 2-3 sliding (their overrides)
    assert args.layer_n_heads == (4, 4, 2, 2)
    assert args.layer_kv_lora_ranks == (16, 16, 32, 32)
    assert args.layer_qk_nope_head_dims == (16, 16, 24, 24)


def test_every_layer_sized_like_layer_0_fails_naming_the_first_sliding_attention(tmp_path, planned):
    """The per-layer-size slip: each attention reads layer 0's sizes. The sliding layers'
    checkpoint tensors do not fit, and verify names the first of them."""
    models, name = write_planned(tmp_path / "models", planned)
    path = models / name / "model.py"
    source = path.read_text()
    wrong = source.replace("args = args.of_layer(layer_id)", "args = args.of_layer(0)")
    assert wrong != source
    path.write_text(wrong)
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert "layers.2.attention" in (result.error or ""), result.error


def test_unscaled_latents_fail_in_the_first_attention(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="latent_scale")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention"), result.first_divergence


def test_a_dropped_rope_key_norm_fails_in_the_first_attention(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned, without="k_rope_norm")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert any("k_rope_only_layernorm" in key for key in result.unexpected_keys)
    assert result.first_divergence.startswith("layers.0.attention"), result.first_divergence


def test_latent_norms_at_the_references_eps_fail(tmp_path, planned):
    """1e-6 for the toy's 1e-5 in the latent norms: a small difference spread over every
    layer (no one module stands out), still far beyond HF's own noise."""
    models, name = write_planned(tmp_path / "models", planned, without="latent_norm_eps")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.max_abs_diff > 10 * result.bound


def test_indexed_layers_rotated_in_bf16_fail_in_bf16(tmp_path, planned):
    """Every layer rotated in the model's dtype: fp32 cannot tell, bf16 can (HF turns the
    indexed layers' q/k on fp32 tables; the rounding flips a router's near-tie)."""
    models, name = write_planned(tmp_path / "models", planned, without="rope_fp32_layer_types")
    fp32, bf16 = verify_toy(models, name, ("fp32", "bf16"))
    assert fp32.passed and not bf16.passed


def _tensor_parallel(models, name, **plan_changes):
    spec = load_spec(name, models)
    plan = {**plan_module(spec).PLAN, **plan_changes}
    return verify_parallel(spec, default_cases(spec, switches=False)[0].config, "tp=2", plan=plan)


def test_normed_rope_key_under_tensor_parallel_matches_one_device(tmp_path, planned):
    models, name = write_planned(tmp_path / "models", planned)
    result = _tensor_parallel(models, name)
    assert result.passed, result.line()


@pytest.mark.parametrize(
    ("slip", "named"),
    [
        # the key's gradient never summed: each rank's norm learns from its own heads only
        ({"layers.*.attention.k_pe_norm": "replicate"}, "attention.k_pe_norm.weight"),
        # summed at the projection's tail as well as after the norm: counted twice
        ({"layers.*.attention.wkv_a": "rope_key_tail"}, "attention.wkv_a.weight"),
    ],
)
def test_rope_key_norm_gradient_summed_wrong_fails_naming_it(tmp_path, planned, slip, named):
    models, name = write_planned(tmp_path / "models", planned)
    result = _tensor_parallel(models, name, **slip)
    assert not result.passed
    assert result.error.startswith("first differing gradient: "), result.error
    assert named in result.error.splitlines()[0], result.error
