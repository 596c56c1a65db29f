"""The package's second attention kernel, for the same-dtype bf16 check's noise.

The same-dtype check holds the package in bf16 to HF in bf16 within what a choice of
attention kernel moves bf16 logits (`compare.same_dtype_bound`). HF samples that with its
default kernel against its eager one; a model whose HF code has the eager kernel only
(GPT-J, GPT-Neo, BERT-style heads...) gives no second sample, while the package runs the
fused `F.scaled_dot_product_attention`: the package makes a kernel choice HF cannot. So
the package is run once more with that call computed by the explicit formula HF's eager
kernels use (scores in the dtype, scaled, masked, softmax in fp32 rounded back, times the
values): its fused against its explicit attention is the same kind of sample. A package that
never calls the fused kernel (an explicit attention of its own) gives none: zero noise.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def explicit_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """`F.scaled_dot_product_attention`'s result (no dropout: verify runs in eval), by the
    explicit formula of HF's `eager_attention_forward`."""
    del dropout_p
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeats = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeats, dim=-3)
        value = value.repeat_interleave(repeats, dim=-3)
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    lowest = torch.finfo(scores.dtype).min
    if is_causal:  # top-left aligned, as the fused kernel's
        keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, lowest)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, lowest)
        else:
            scores = scores + attn_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(probs, value)


@contextlib.contextmanager
def explicit_attention_kernel():
    """Within: every `F.scaled_dot_product_attention` call runs `explicit_attention`."""
    fused = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = explicit_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = fused
