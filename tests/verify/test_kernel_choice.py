"""The bf16 verdict against HF's fp32 where the package's fused attention is a kernel HF's
own noise could not sample (`run._kernel_choice`): only there, and only when the package
with HF's attention formula is within the bound, is an input the fused run fails admitted."""

from __future__ import annotations

import torch

from codegen.verify.compare import Bound, Comparison, compare
from codegen.verify.run import VerifyResult, _kernel_choice

HF_FP32 = torch.tensor([[4.0, -2.0, 1.0, 0.5]])
ROUNDED = HF_FP32 + torch.tensor([[0.01, 0.0, 0.0, 0.0]])  # what bf16 costs: 2.5e-3 relative
TIPPED = HF_FP32 + torch.tensor([[0.0, 0.5, 0.0, 0.0]])  # a near-tied expert the other way
LIMIT = Bound(relative=1e-2, cosine_distance=1e-4, noise=compare(ROUNDED, HF_FP32))


def _verdict(fused, explicit, hf_kernels):
    result = VerifyResult(model="m", model_type="m", case="m", dtype="bf16")
    same = ([[hf_kernels[0]]], None, [explicit])
    if len(hf_kernels) > 1:
        same[0].append([hf_kernels[1]])
    comparison, admitted = _kernel_choice(result, same, 0, (fused, HF_FP32), LIMIT)
    return comparison, admitted, result.fused_kernel_diff


def test_a_fused_kernel_tipping_a_choice_is_judged_with_hfs_formula():
    comparison, admitted, fused_diff = _verdict(TIPPED, ROUNDED, [ROUNDED])
    assert admitted and comparison == compare(ROUNDED, HF_FP32)
    assert fused_diff == compare(TIPPED, HF_FP32).relative == 0.125


def test_a_package_apart_with_hfs_formula_too_fails():
    """A misplaced rounding (a router projected in bf16) moves the explicit run as well."""
    comparison, admitted, fused_diff = _verdict(TIPPED, TIPPED, [ROUNDED])
    assert not admitted and fused_diff is None
    comparison, admitted, _ = _verdict(TIPPED, TIPPED * 1.001, [ROUNDED])
    assert not admitted and comparison == compare(TIPPED, HF_FP32)


def test_no_allowance_where_hfs_two_kernels_sampled_the_choice():
    """HF's default and eager kernels differ: its own noise already holds a kernel choice."""
    _, admitted, fused_diff = _verdict(TIPPED, ROUNDED, [ROUNDED, ROUNDED * 1.0001])
    assert not admitted and fused_diff is None


def test_no_allowance_without_a_fused_call():
    """A package computing its attention explicitly gives the same logits either way."""
    _, admitted, fused_diff = _verdict(TIPPED, TIPPED.clone(), [ROUNDED])
    assert not admitted and fused_diff is None


def test_the_fixtures_straddle_the_bound():
    assert not LIMIT.admits(compare(TIPPED, HF_FP32))
    assert LIMIT.admits(compare(ROUNDED, HF_FP32))
    assert isinstance(LIMIT.noise, Comparison)
