"""The package's second attention kernel (`codegen/verify/kernels.py`): the explicit formula
computes what the fused kernel computes, and it sets the same-dtype bound of a model whose
HF code has the eager kernel only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import codegen.verify.compare as compare_module
from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.kernels import explicit_attention, explicit_attention_kernel
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

FUSED = F.scaled_dot_product_attention


def _qkv(kv_heads: int = 4, length: int = 7):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, length, 8, generator=generator)
    k = torch.randn(2, kv_heads, length, 8, generator=generator)
    v = torch.randn(2, kv_heads, length, 8, generator=generator)
    return q, k, v


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"is_causal": True},
        {"is_causal": True, "scale": 1.0},
        {"attn_mask": torch.ones(7, 7, dtype=torch.bool).tril(-1) | torch.eye(7, dtype=torch.bool)},
        {"attn_mask": torch.randn(7, 7)},
    ],
    ids=["full", "causal", "causal-unscaled", "bool-mask", "additive-mask"],
)
def test_the_explicit_formula_is_the_fused_kernel_in_fp32(kwargs):
    q, k, v = _qkv()
    torch.testing.assert_close(explicit_attention(q, k, v, **kwargs), FUSED(q, k, v, **kwargs))


def test_grouped_heads_are_repeated_as_the_fused_kernel_repeats_them():
    q, k, v = _qkv(kv_heads=2)
    want = FUSED(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(explicit_attention(q, k, v, is_causal=True, enable_gqa=True), want)


def test_the_kernel_is_swapped_inside_only():
    q, k, v = _qkv()
    with explicit_attention_kernel():
        assert F.scaled_dot_product_attention is explicit_attention
        inside = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert F.scaled_dot_product_attention is FUSED
    assert inside.dtype == torch.bfloat16


@pytest.fixture(scope="module")
def roformer(tmp_path_factory):
    """The planned roformer package (HF: eager attention only, BERT-style post-norm)."""
    target = load_target("roformer")
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    models = tmp_path_factory.mktemp("roformer") / "models"
    scaffold_into(
        models, plan.reference, "gen_roformer", ["roformer"], plan.steps, features=target.features
    )
    return load_spec("gen_roformer", models)


def _verify_bf16(spec):
    (result,) = verify_case(
        spec, Case("roformer", tiny_config("roformer")), ["bf16"], gradients=False, export=False
    )
    return result


def test_an_eager_only_model_is_held_to_its_package_kernel_noise(roformer):
    """HF's roformer has its eager attention only (its two kernels agree bit for bit), the
    planned package runs the fused kernel: the same-dtype bound grows from the package's
    fused against its explicit attention, and the honest package passes it (against the
    floor alone it failed: 1.08e-2 of 1e-2)."""
    result = _verify_bf16(roformer)
    assert result.passed, result.first_divergence
    assert result.same_dtype_noise > 0
    assert result.same_dtype_diff <= result.same_dtype_bound


def test_a_same_dtype_failure_names_no_stage_whose_fp32_outputs_mean_something_else(
    roformer, monkeypatch
):
    """With the same-dtype bound at zero the honest package fails it. Its fp32 logits agree
    with HF's, so the stage search drops the pairs apart in fp32 (HF's attention adds the
    residual and norms it, the package's does not: 1.2 apart) and names the first stage
    whose input is HF's bit for bit and whose output is not: the first layer, where the
    fused kernel rounds otherwise than HF's eager one."""
    for name in ("SAME_DTYPE_MULTIPLE", "SAME_DTYPE_RELATIVE_FLOOR", "SAME_DTYPE_COSINE_FLOOR"):
        monkeypatch.setattr(compare_module, name, 0.0)
    result = _verify_bf16(roformer)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0 (HF "), result.first_divergence
    assert result.first_divergence.endswith("(against HF in bf16)"), result.first_divergence
