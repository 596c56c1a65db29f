"""The shared routed experts (codegen/layers/experts.py) against a plain loop over experts.

The grouped forward sorts (token, slot) pairs by expert and takes the gate's activation and
the up product in place; both must leave the values and every gradient exactly those of one
matmul per expert, including for experts no token picks.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codegen.layers.experts import Experts


def _experts(num_experts=4, dim=8, hidden=12) -> Experts:
    torch.manual_seed(0)
    experts = Experts(num_experts, dim, hidden)
    for weight in (experts.w1, experts.w2, experts.w3):
        torch.nn.init.normal_(weight, std=0.3)
    return experts


def _loop(experts: Experts, x, indices, weights):
    """One expert at a time, each (token, slot) pair's output scaled by its routing weight."""
    out = torch.zeros(x.shape[0], indices.shape[1], x.shape[1], dtype=weights.dtype)
    for expert in range(experts.num_experts):
        token, slot = torch.where(indices == expert)
        rows = x[token]
        hidden = F.silu(rows @ experts.w1[expert].T) * (rows @ experts.w3[expert].T)
        out[token, slot] = (hidden @ experts.w2[expert].T) * weights[token, slot, None]
    return out.sum(dim=1).to(x.dtype)


def _routing(tokens=10, top_k=2, num_experts=4):
    generator = torch.Generator().manual_seed(1)
    # expert 3 is picked by no token: its block is empty
    indices = torch.stack(
        [torch.randperm(num_experts - 1, generator=generator)[:top_k] for _ in range(tokens)]
    )
    weights = torch.rand(tokens, top_k, generator=generator)
    return indices, weights


def test_grouped_experts_equal_one_matmul_per_expert():
    experts = _experts()
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(2))
    indices, weights = _routing()
    torch.testing.assert_close(experts(x, indices, weights), _loop(experts, x, indices, weights))


def test_in_place_activation_keeps_every_gradient():
    experts = _experts()
    indices, weights = _routing()
    grads = []
    for forward in (experts, lambda *a: _loop(experts, *a)):
        x = torch.randn(10, 8, generator=torch.Generator().manual_seed(2), requires_grad=True)
        scores = weights.clone().requires_grad_()
        experts.zero_grad()
        (forward(x, indices, scores) ** 2).sum().backward()
        grads.append([x.grad, scores.grad] + [w.grad.clone() for w in experts.parameters()])
    for grouped, looped in zip(*grads, strict=True):
        torch.testing.assert_close(grouped, looped)
    # the expert no token picks gets a zero gradient, not a missing or stale one
    assert all(w.grad[3].abs().max() == 0 for w in experts.parameters())


# F.grouped_mm needs widths of a multiple of 16 bytes: 9 in fp32 (36 bytes) and 12 in bf16
# (24 bytes) are not, while HF's experts take any width
@pytest.mark.parametrize(
    ("dtype", "dim", "hidden"),
    [(torch.float32, 8, 9), (torch.float32, 9, 8), (torch.bfloat16, 8, 12)],
)
def test_widths_the_grouped_kernel_refuses_run_one_expert_at_a_time(dtype, dim, hidden):
    experts = _experts(dim=dim, hidden=hidden).to(dtype)
    indices, weights = _routing()
    grads = []
    for forward in (experts, lambda *a: _loop(experts, *a)):
        x = torch.randn(10, dim, generator=torch.Generator().manual_seed(2)).to(dtype)
        x.requires_grad_()
        experts.zero_grad()
        out = forward(x, indices, weights)
        (out.float() ** 2).sum().backward()
        grads.append([out, x.grad] + [w.grad.clone() for w in experts.parameters()])
    for grouped, looped in zip(*grads, strict=True):
        torch.testing.assert_close(grouped, looped)
