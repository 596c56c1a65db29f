"""Routed SwiGLU experts held as stacked weights, run with one grouped matmul per projection.

One implementation for every MoE package: the references import it, `add_moe` wires it in,
and a generated package gets a copy (`experts.py`). A transform that changes the experts'
maths for one target (clamped SwiGLU, biases, a fused gate/up weight) first copies this
class into the package's model.py and edits that copy, so the shared class stays plain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def grouped_mm(rows: torch.Tensor, weights: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """`F.grouped_mm(rows, weights, offs=offs)`: the rows of group i (up to `offs[i]`) times
    `weights[i]`. The kernel (and its backward) refuses operands whose widths are not a
    multiple of 16 bytes, as an expert width of 36 in bf16 or 37 in fp32 is, while HF accepts
    any width; those are multiplied one group at a time, the same products in the same order."""
    if _kernel_takes(rows, weights):
        return F.grouped_mm(rows, weights, offs=offs)
    ends = offs.tolist()
    starts = [0, *ends[:-1]]
    groups = zip(weights, starts, ends, strict=True)
    return torch.cat([rows[start:end] @ weight for weight, start, end in groups])


def _kernel_takes(rows: torch.Tensor, weights: torch.Tensor) -> bool:
    """Whether both operands start on 16 bytes and their widths (the product's inner and
    outer, which the backward multiplies by) and strides other than 1 span multiples of 16."""
    strides = [s for s in (*rows.stride(), *weights.stride()[-2:]) if s != 1]
    numbers = [rows.shape[-1], weights.shape[-1], *strides]
    size = rows.element_size()
    starts = (rows.data_ptr(), weights.data_ptr())
    return all(n * size % 16 == 0 for n in numbers) and all(s % 16 == 0 for s in starts)


class Experts(nn.Module):
    """`num_experts` SwiGLU experts as stacked weights [num_experts, out, in].

    Every (token, slot) pair is sorted by its expert, so each expert's rows are contiguous;
    one `grouped_mm` per projection then multiplies every block by its own expert's weight
    (`offsets`: end row of each expert). No loop over experts or tokens and no host sync; on
    CPU it is exact (bit-equal to per-expert matmuls) and is what HF itself dispatches to.
    The k weighted outputs of a token are summed in the routing weights' dtype (fp32 for a
    router that keeps its scores in fp32), then cast back.
    """

    def __init__(self, num_experts: int, dim: int, hidden_dim: int):
        super().__init__()
        self.num_experts = num_experts
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
        hidden = F.silu(grouped_mm(rows, self.w1.mT, offs=offsets), inplace=True)
        hidden *= grouped_mm(rows, self.w3.mT, offs=offsets)
        out = grouped_mm(hidden, self.w2.mT, offs=offsets) * weights.flatten()[order, None]
        out = torch.empty_like(out).index_copy_(0, order, out)  # back to (token, slot) order
        return out.view(-1, top_k, x.shape[-1]).sum(dim=1).to(x.dtype)
