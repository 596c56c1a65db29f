"""RMSNorm computed in fp32 and cast back before the weight, as HF checkpoints expect.

torch's `rms_norm` kernel gives HF's `x * rsqrt(mean(x**2) + eps)` bit for bit in one pass,
where HF's form writes the squares and the product as tensors of their own.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = torch.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * normed.to(x.dtype)
