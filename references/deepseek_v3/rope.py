"""The RoPE deltas of multi-head latent attention, on top of the shared rotary tables.

- Interleaved rotary pairs (`rope_interleave`, HF `apply_rotary_pos_emb_interleave`): the
  checkpoint lays the rope dims out as (x0, x1), (x2, x3), ..., each pair rotated by one
  frequency; the result stays in place. In fp32 each pair turns as one complex product.
- The softmax scale: `qk_head_dim ** -0.5`, times mscale(factor, mscale_all_dim) squared
  whenever the rope is scaled and `mscale_all_dim` is set (HF `yarn_apply_mscale`). This is
  on top of yarn's attention factor on cos/sin, which the shared RotaryEmbedding applies.
"""

from __future__ import annotations

import torch

from codegen.layers.rope import RopeScaling, yarn_mscale


def apply_rotary_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (batch, heads, seq, dim) with cos/sin (batch, seq, dim) = cat(freqs, freqs)."""
    half = cos.shape[-1] // 2
    cos, sin = cos[..., :half].unsqueeze(1), sin[..., :half].unsqueeze(1)
    if x.dtype == torch.float32:
        # pair i as the complex number x[2i] + j x[2i + 1], turned by cos_i + j sin_i: one
        # product writes the result, where products, sums and their join write it four times
        pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * torch.complex(cos.float(), sin.float())).flatten(-2)
    # complex numbers have no bf16: other dtypes turn in their own precision, rounded as HF's
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)


def softmax_scale(rope: RopeScaling, qk_head_dim: int) -> float:
    scale = qk_head_dim**-0.5
    if rope.rope_type != "default" and rope.mscale_all_dim:
        scale *= yarn_mscale(rope.factor, rope.mscale_all_dim) ** 2
    return scale
