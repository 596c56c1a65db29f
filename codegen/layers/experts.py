"""Routed SwiGLU experts held as stacked weights, run with one grouped matmul per projection.

Each expert is a gated feed-forward, `w2(act(w1 x) * w3 x)`; `act` is silu unless the
model's config names another activation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from codegen.layers.grouped_mm import grouped_mm


class Experts(nn.Module):
    """`num_experts` SwiGLU experts as stacked weights [num_experts, out, in].

    Every (token, slot) pair is sorted by its expert, so each expert's rows are contiguous;
    one `grouped_mm` per projection then multiplies every block by its own expert's weight
    (`offsets`: end row of each expert). No loop over experts or tokens and no host sync; on
    CPU it is exact (bit-equal to per-expert matmuls) and is what HF itself dispatches to.
    The k weighted outputs of a token are summed in the routing weights' dtype (fp32 for a
    router that keeps its scores in fp32), then cast back.

    `act` is the gate's activation: silu (SwiGLU) unless the config names another. Its
    output is multiplied by up out of place: the backward of relu, sigmoid or tanh reads it.
    """

    def __init__(
        self,
        num_experts: int,
        dim: int,
        hidden_dim: int,
        act: Callable[[torch.Tensor], torch.Tensor] = F.silu,
    ):
        super().__init__()
        self.num_experts = num_experts
        self.act = act
        self.w1 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))
        self.w3 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))

    def forward(
        self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """x (tokens, dim); indices, weights (tokens, top_k) -> (tokens, dim)."""
        top_k = indices.shape[1]
        order = indices.flatten().argsort(stable=True)
        counts = torch.bincount(indices.flatten(), minlength=self.num_experts)
        offsets = counts.cumsum(0, dtype=torch.int32)
        rows = x[order // top_k]
        hidden = self.act(grouped_mm(rows, self.w1.mT, offs=offsets))
        hidden = hidden * grouped_mm(rows, self.w3.mT, offs=offsets)
        out = grouped_mm(hidden, self.w2.mT, offs=offsets) * weights.flatten()[order, None]
        out = torch.empty_like(out).index_copy_(0, order, out)  # back to (token, slot) order
        return out.view(-1, top_k, x.shape[-1]).sum(dim=1).to(x.dtype)
