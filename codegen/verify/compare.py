"""Logit comparison and the per-dtype pass thresholds."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Threshold:
    min_cosine: float
    max_relative_diff: float  # max |a - b| divided by max |reference logits|


# dtype name -> what counts as parity. fp32 is exact up to kernel reordering; bf16 rounds
# every matmul, so only the direction of the logits is held to a bound.
THRESHOLDS: dict[str, Threshold] = {
    "fp32": Threshold(min_cosine=0.99999, max_relative_diff=1e-4),
    "bf16": Threshold(min_cosine=0.999, max_relative_diff=float("inf")),
}

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Comparison:
    cosine: float
    max_abs_diff: float
    scale: float  # max |reference logits|

    def passes(self, threshold: Threshold) -> bool:
        relative = self.max_abs_diff / max(self.scale, 1e-12)
        return self.cosine >= threshold.min_cosine and relative <= threshold.max_relative_diff


def compare(candidate: torch.Tensor, reference: torch.Tensor) -> Comparison:
    """Cosine similarity of the flattened logits, max abs diff, and the logits' scale."""
    a, b = candidate.detach().double().flatten(), reference.detach().double().flatten()
    if a.shape != b.shape:
        return Comparison(cosine=float("nan"), max_abs_diff=float("inf"), scale=0.0)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    return Comparison(cosine, (a - b).abs().max().item(), b.abs().max().item())
