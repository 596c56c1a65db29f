"""ALiBi (Press et al., "Train Short, Test Long"): no rotary; each attention head adds a
linear bias over the key positions to its scores, steeper for the first heads.

Head h of n adds `slope_h * key_position` to every query's scores. The softmax of a row
does not change when a constant is added to it, so this equals the paper's
`slope_h * (key - query)` under causal attention, whatever position a row starts from.
The slopes are computed per forward (a handful of numbers), so the meta-device lifecycle
needs no buffer rebuilt.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def alibi_slopes(n_heads: int, bias_max: float = 8.0, device=None) -> torch.Tensor:
    """Per-head slopes, float32. For n a power of two, head k (1-based) gets
    2 ** (-k * bias_max / n). Otherwise the slopes of the next power of two are taken, its
    even-numbered heads' first, then its odd-numbered heads', cut to n (so the first heads
    keep the power-of-two-below sequence and the others fall in between)."""
    padded = 2 ** math.ceil(math.log2(n_heads))
    exponents = torch.arange(1, padded + 1, device=device, dtype=torch.float32)
    slopes = 1.0 / torch.pow(2.0, exponents * (bias_max / padded))
    if padded != n_heads:
        slopes = torch.cat([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes


class AlibiBias(nn.Module):
    """The additive score bias (batch, heads, 1, keys) for key `positions` (batch, keys):
    float32, broadcast over the queries. No parameters; under tensor parallelism the shard
    plan keeps each rank's heads of it (style `head_slice`)."""

    def __init__(self, n_heads: int, bias_max: float = 8.0):
        super().__init__()
        self.n_heads = n_heads
        self.bias_max = bias_max

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        slopes = alibi_slopes(self.n_heads, self.bias_max, positions.device)
        return slopes[None, :, None, None] * positions[:, None, None, :].float()
