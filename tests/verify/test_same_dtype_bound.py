"""The bf16 same-dtype checks: the package in bf16 against HF in bf16, within HF's own bf16
kernel noise (default vs eager attention) or a floor, and no paired module returning a
narrower dtype than HF's (a lost fp32 upcast). The seeded rounding defects they exist for
(flint's norm weight, glm4_moe's router) are in tests/scaffold."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from codegen.models import load_spec
from codegen.verify.compare import (
    SAME_DTYPE_COSINE_FLOOR,
    SAME_DTYPE_MULTIPLE,
    SAME_DTYPE_RELATIVE_FLOOR,
    Comparison,
    same_dtype_bound,
)
from codegen.verify.divergence import agreeing_pairs, module_pairs, narrowed_stage
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

QUIET = Comparison(cosine=1.0, max_abs_diff=0.0, scale=10.0)  # HF's kernels agree bit for bit


def test_kernels_that_agree_leave_the_floors():
    limit = same_dtype_bound(QUIET)
    assert limit.relative == SAME_DTYPE_RELATIVE_FLOOR
    assert limit.cosine_distance == SAME_DTYPE_COSINE_FLOOR
    assert limit.admits(QUIET)  # a package bit for bit HF's


def test_kernel_noise_sets_the_bound_as_a_multiple():
    noise = Comparison(cosine=1.0 - 1e-4, max_abs_diff=0.5, scale=10.0)  # relative 5e-2
    limit = same_dtype_bound(noise)
    assert limit.relative == SAME_DTYPE_MULTIPLE * 5e-2
    assert abs(limit.cosine_distance - SAME_DTYPE_MULTIPLE**2 * 1e-4) < 1e-12
    assert limit.admits(Comparison(cosine=1.0 - 3e-4, max_abs_diff=0.9, scale=10.0))
    assert not limit.admits(Comparison(cosine=1.0 - 5e-4, max_abs_diff=0.9, scale=10.0))
    assert not limit.admits(Comparison(cosine=1.0 - 1e-5, max_abs_diff=1.1, scale=10.0))


class _Router(nn.Module):
    def __init__(self, upcast: bool | str):
        super().__init__()
        self.weight, self.upcast = nn.Parameter(torch.randn(3, 4)), upcast

    def forward(self, x):
        if self.upcast == "after":  # granite-moe's router: projected in bf16, widened after
            return nn.functional.linear(x, self.weight).float()
        if self.upcast:  # glm4_moe's router: projected and returned in fp32
            return nn.functional.linear(x.float(), self.weight.float())
        return nn.functional.linear(x, self.weight)


class _Toy(nn.Module):
    def __init__(self, upcast: bool | str):
        super().__init__()
        self.embed = nn.Embedding(8, 4)
        self.layers = nn.ModuleList([_Router(upcast)])
        self.head = nn.Linear(3, 8)

    def forward(self, tokens=None, input_ids=None, position_ids=None, positions=None):
        h = self.embed(tokens if tokens is not None else input_ids)
        logits = self.head(self.layers[0](h).to(h.dtype))
        return logits if tokens is not None else SimpleNamespace(logits=logits)


def _pair(house_upcast: bool, hf_upcast: bool | str = True):
    house, hf = _Toy(house_upcast), _Toy(upcast=hf_upcast)
    hf.load_state_dict(house.state_dict())
    pairs = module_pairs(house, hf)
    return house.to(torch.bfloat16), hf.to(torch.bfloat16), pairs


def test_a_module_rounding_what_hf_returns_in_fp32_is_named():
    house, hf, pairs = _pair(house_upcast=False)
    found = narrowed_stage(house, hf, torch.tensor([[1, 2, 3]]), None, pairs)
    assert found is not None and found.house_module == "layers.0"
    assert "returns bfloat16 where HF returns float32" in str(found)


def test_the_same_dtypes_name_nothing():
    house, hf, pairs = _pair(house_upcast=True)
    assert narrowed_stage(house, hf, torch.tensor([[1, 2, 3]]), None, pairs) is None


def test_a_module_hf_computes_in_bf16_and_only_widens_is_not_named():
    """HF's fp32 output holds bf16 values only (the product was rounded to bf16 before
    `.float()`): the package returning those same values in bf16 rounds nothing."""
    house, hf, pairs = _pair(house_upcast=False, hf_upcast="after")
    tokens = torch.tensor([[1, 2, 3]])
    assert narrowed_stage(house, hf, tokens, None, pairs) is None
    with torch.no_grad():
        assert hf.layers[0](hf.embed(tokens)).dtype == torch.float32


def test_an_honest_reference_is_hf_bf16_bit_for_bit():
    """llama's bf16 logits are HF's bf16 logits exactly, and the bound it is held to grew
    from HF's own kernel noise (nonzero: the eager kernel rounds its probabilities)."""
    (result,) = verify_case(
        load_spec("llama"),
        Case("llama", tiny_config("llama")),
        ["bf16"],
        gradients=False,
        export=False,
    )
    assert result.passed, result.first_divergence
    assert result.same_dtype_diff == 0.0
    assert result.same_dtype_noise > 0
    assert result.same_dtype_bound == max(
        SAME_DTYPE_MULTIPLE * result.same_dtype_noise, SAME_DTYPE_RELATIVE_FLOOR
    )


class _Output(nn.Module):  # HF's BertSelfOutput: dense, then the residual sum normed
    def __init__(self):
        super().__init__()
        self.o, self.norm = nn.Linear(4, 4), nn.LayerNorm(4)

    def forward(self, attended, x):
        return self.norm(self.o(attended) + x)


class _HFSublayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.ModuleDict({"q": nn.Linear(4, 4)})
        self.output = _Output()

    def forward(self, x):
        return self.output(self.inner["q"](x), x)


class _HouseSublayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.o = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.o(self.q(x))


class _Stack(nn.Module):
    def __init__(self, hf: bool):
        super().__init__()
        self.embed = nn.Embedding(8, 4)
        self.layers = nn.ModuleList([_HFSublayer() if hf else _HouseSublayer()])
        self.norm = None if hf else nn.LayerNorm(4)  # the package norms in its block
        self.head = nn.Linear(4, 8)

    def forward(self, tokens=None, input_ids=None, position_ids=None, positions=None):
        h = self.embed(tokens if tokens is not None else input_ids)
        out = self.layers[0](h)
        h = out if self.norm is None else self.norm(h + out)
        logits = self.head(h)
        return logits if tokens is not None else SimpleNamespace(logits=logits)


def test_pairs_whose_outputs_mean_other_things_are_dropped():
    """Same weights, same logits; HF's sublayer returns norm(x + o(q(x))), the package's
    o(q(x)) (its block adds and norms): the pair (HF's holds more: the norm) is apart in
    fp32 and dropped, the projections stay."""
    house, hf = _Stack(hf=False), _Stack(hf=True)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in house.norm.parameters():
            param.normal_()
    ours = house.layers[0]
    hf.load_state_dict(
        {
            "embed.weight": house.embed.weight,
            **{f"head.{k}": v for k, v in house.head.state_dict().items()},
            **{f"layers.0.inner.q.{k}": v for k, v in ours.q.state_dict().items()},
            **{f"layers.0.output.o.{k}": v for k, v in ours.o.state_dict().items()},
            **{f"layers.0.output.norm.{k}": v for k, v in house.norm.state_dict().items()},
        }
    )
    tokens = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(house(tokens), hf(input_ids=tokens).logits)
    pairs = module_pairs(house, hf)
    assert ("layers.0", "layers.0") in pairs
    kept = agreeing_pairs(house, hf, tokens, None, pairs, 1e-4)
    assert ("layers.0", "layers.0") not in kept
    assert {("layers.0.q", "layers.0.inner.q"), ("layers.0.o", "layers.0.output.o")} <= set(kept)
