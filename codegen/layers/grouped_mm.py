"""One matmul per group of sorted rows, each group by its own weight: the routed experts'
product, taken by `F.grouped_mm` where the kernel accepts the operands' widths."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
