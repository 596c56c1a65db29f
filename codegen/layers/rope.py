"""Rotary position embeddings: the HF `rope_type` family as one table of frequency rules.

`RopeScaling.from_hf` reads an HF `rope_parameters` dict; `inverse_frequencies` dispatches on
`rope_type` through `FREQUENCY_RULES` and returns (inv_freq, attention_factor). The yarn
attention factor multiplies cos/sin, exactly where HF applies it; dropping it is a classic
silent bug. `apply_rotary` turns q/k in the HF half-split layout (rotate_half's), so those
checkpoints need no q/k permutation; a package whose rotary pairs adjacent dims turns them in
its own rope.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RopeScaling:
    theta: float
    rope_type: str = "default"
    factor: float | None = None
    original_max_position_embeddings: int | None = None
    max_position_embeddings: int | None = None  # dynamic NTK grows past this length
    attention_factor: float | None = None  # yarn
    beta_fast: float | None = None  # yarn
    beta_slow: float | None = None  # yarn
    mscale: float | None = None  # yarn (deepseek)
    mscale_all_dim: float | None = None  # yarn (deepseek)
    truncate: bool = True  # yarn
    low_freq_factor: float | None = None  # llama3
    high_freq_factor: float | None = None  # llama3
    partial_rotary_factor: float = 1.0  # fraction of each head that is rotated

    def rotary_dim(self, head_dim: int) -> int:
        if self.rope_type == "proportional":
            return head_dim  # the whole head turns; its unrotated share at frequency zero
        return int(head_dim * self.partial_rotary_factor)

    @classmethod
    def from_hf(cls, rope_parameters: dict, max_position_embeddings: int) -> RopeScaling:
        # older configs name the kind `type`
        rope_type = rope_parameters.get("rope_type", rope_parameters.get("type", "default"))
        if rope_type not in FREQUENCY_RULES:
            raise NotImplementedError(f"rope_type {rope_type!r} is not supported")
        return cls(
            theta=rope_parameters["rope_theta"],
            rope_type=rope_type,
            factor=rope_parameters.get("factor"),
            original_max_position_embeddings=rope_parameters.get(
                "original_max_position_embeddings"
            ),
            max_position_embeddings=max_position_embeddings,
            attention_factor=rope_parameters.get("attention_factor"),
            beta_fast=rope_parameters.get("beta_fast"),
            beta_slow=rope_parameters.get("beta_slow"),
            mscale=rope_parameters.get("mscale"),
            mscale_all_dim=rope_parameters.get("mscale_all_dim"),
            truncate=rope_parameters.get("truncate", True),
            low_freq_factor=rope_parameters.get("low_freq_factor"),
            high_freq_factor=rope_parameters.get("high_freq_factor"),
            partial_rotary_factor=rope_parameters.get("partial_rotary_factor", 1.0),
        )


def _base_inv_freq(theta: float, dim: int) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def _default(rope: RopeScaling, dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    return _base_inv_freq(rope.theta, dim), 1.0


def _linear(rope: RopeScaling, dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    return _base_inv_freq(rope.theta, dim) / rope.factor, 1.0


def _dynamic(rope: RopeScaling, dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    """NTK-aware: the base grows once the sequence outruns max_position_embeddings."""
    max_len = rope.max_position_embeddings
    if seq_len <= max_len:
        return _base_inv_freq(rope.theta, dim), 1.0
    factor = rope.factor
    base = rope.theta * ((factor * seq_len / max_len) - (factor - 1)) ** (dim / (dim - 2))
    return _base_inv_freq(base, dim), 1.0


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's magnitude correction for a context stretched `scale` times (1 when unstretched)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(rope: RopeScaling, dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    original = rope.original_max_position_embeddings
    factor = rope.factor or rope.max_position_embeddings / original
    attention_factor = rope.attention_factor
    if attention_factor is None:
        if rope.mscale and rope.mscale_all_dim:
            attention_factor = yarn_mscale(factor, rope.mscale) / yarn_mscale(
                factor, rope.mscale_all_dim
            )
        else:
            attention_factor = yarn_mscale(factor)

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(rope.theta))

    low, high = correction_dim(rope.beta_fast or 32), correction_dim(rope.beta_slow or 1)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    extrapolation = 1 - ramp
    pos_freqs = rope.theta ** (torch.arange(0, dim, 2).float() / dim)
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (
        1.0 / pos_freqs
    ) * extrapolation
    return inv_freq, float(attention_factor)


def _llama3(rope: RopeScaling, dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    inv_freq = _base_inv_freq(rope.theta, dim)
    old_context = rope.original_max_position_embeddings
    low_wavelen = old_context / rope.low_freq_factor
    high_wavelen = old_context / rope.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
    smooth = (old_context / wavelen - rope.low_freq_factor) / (
        rope.high_freq_factor - rope.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(is_medium, smoothed, scaled), 1.0


def _proportional(rope: RopeScaling, dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    """The leading int(partial * dim // 2) frequencies of a `dim`-wide table (the exponent
    divides by the whole head, not by the rotated share), the rest zero: those pairs stay
    put, and the table still spans the head, so the rotated dims are split across halves."""
    turning = int(rope.partial_rotary_factor * dim // 2)
    exponents = torch.arange(0, 2 * turning, 2, dtype=torch.int64).float() / dim
    inv_freq = torch.zeros(dim // 2)
    inv_freq[:turning] = 1.0 / (rope.theta**exponents)
    return inv_freq / (rope.factor or 1.0), 1.0


FrequencyRule = Callable[[RopeScaling, int, int], tuple[torch.Tensor, float]]

# rope_type -> how inverse frequencies (and the cos/sin attention factor) are computed.
FREQUENCY_RULES: dict[str, FrequencyRule] = {
    "default": _default,
    "linear": _linear,
    "dynamic": _dynamic,
    "yarn": _yarn,
    "llama3": _llama3,
    "proportional": _proportional,
}


def inverse_frequencies(rope: RopeScaling, dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    return FREQUENCY_RULES[rope.rope_type](rope, dim, seq_len)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for the given positions; `dim` is the rotated part of a head."""

    def __init__(self, rope: RopeScaling, dim: int):
        super().__init__()
        self.rope = rope
        self.dim = dim

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq_len = int(positions.max()) + 1
        inv_freq, attention_factor = inverse_frequencies(self.rope, self.dim, seq_len)
        freqs = positions[..., None].float() * inv_freq.to(positions.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * attention_factor, emb.sin() * attention_factor


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (batch, heads, seq, head_dim) with cos/sin (batch, seq, rotary_dim).

    HF's x * cos + rotate_half(x) * sin, half by half (the same products and sums, bit for
    bit, without writing rotate_half's negated copy). With partial rotary (rotary_dim <
    head_dim) only the leading dims turn; the rest pass.
    """
    cos, sin = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
    half = cos.shape[-1] // 2
    x1, x2, passed = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    cos1, cos2 = cos.chunk(2, dim=-1)
    sin1, sin2 = sin.chunk(2, dim=-1)
    return torch.cat((x1 * cos1 - x2 * sin1, x2 * cos2 + x1 * sin2, passed), dim=-1)
