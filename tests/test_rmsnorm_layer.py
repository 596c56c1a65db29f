"""The house RMSNorm is transformers' LlamaRMSNorm, bit for bit, values and gradients."""

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from codegen.layers.norm import RMSNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dim", [64, 96, 512, 1000])
def test_rmsnorm_is_llamas_bit_for_bit(dtype, dim):
    torch.manual_seed(0)
    weight = torch.randn(dim)
    house, hf = RMSNorm(dim, eps=1e-5), LlamaRMSNorm(dim, eps=1e-5)
    for norm in (house, hf):
        norm.weight.data.copy_(weight)
        norm.to(dtype)
    x = (torch.randn(3, 17, dim) * 4).to(dtype)
    x_house, x_hf = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_house, out_hf = house(x_house), hf(x_hf)
    assert torch.equal(out_house, out_hf)
    grad = torch.randn_like(out_hf)
    out_house.backward(grad)
    out_hf.backward(grad)
    assert torch.allclose(x_house.grad.float(), x_hf.grad.float(), rtol=0, atol=1e-5)
    assert torch.allclose(house.weight.grad.float(), hf.weight.grad.float(), rtol=1e-6, atol=1e-5)
