"""Logit comparison, with pass bounds calibrated on the HF model's own numerical noise.

A fixed tolerance is either loose enough to hide real bugs (gelu vs tanh-gelu stays under
1e-4 x max|logit|; a dropped causal mask keeps bf16 cosine above 0.999) or tight enough to
fail honest reorderings of a matmul. So each run measures how much HF itself moves when
nothing is wrong, on the same config and tokens, and holds the package to a small multiple:

- fp32: HF with its default attention kernel vs HF eager attention. Both are correct; their
  difference is pure reduction-order noise.
- bf16: HF in bf16 vs HF in fp32: what bf16 rounding alone costs. The package in bf16 is
  compared with HF in fp32 and must cost at most a small multiple of that.

Both the max abs diff and the cosine distance (1 - cosine) are held to the bound; the
cosine distance grows with the square of an error (1 - cos ~ |e|^2 / 2|x|^2), so its
multiple is the square of the max-diff one. All the constants that decide a verdict are
here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
DTYPE_NAMES = {"fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16"}

# dtype -> how many times HF's own noise the package may differ by
NOISE_MULTIPLE = {"fp32": 8.0, "bf16": 2.0}
# dtype -> floor of the relative max diff (max |a - b| / max |reference|) when HF's two
# runs happen to agree bit for bit: float32 reassociation alone moves logits by ~1e-7.
RELATIVE_FLOOR = {"fp32": 1e-6, "bf16": 1e-3}
# floor of the cosine distance, for the same reason
COSINE_DISTANCE_FLOOR = {"fp32": 1e-10, "bf16": 1e-6}
# relative output difference above which a module counts as diverged when naming the culprit
DIVERGENCE_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}
# gradient of a parameter: relative max diff allowed (fp32; the same reduction-order noise
# as the logits, grown by one backward pass)
GRADIENT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Comparison:
    cosine: float
    max_abs_diff: float
    scale: float  # max |reference logits|

    @property
    def relative(self) -> float:
        return self.max_abs_diff / max(self.scale, 1e-12)

    @property
    def cosine_distance(self) -> float:
        return 1.0 - self.cosine


@dataclass(frozen=True)
class Bound:
    """What the package may differ by, from HF's own noise in the same run."""

    relative: float  # bound on max |package - HF| / max |HF|
    cosine_distance: float  # bound on 1 - cosine
    noise: Comparison  # HF against itself

    def admits(self, comparison: Comparison) -> bool:
        return (
            comparison.relative <= self.relative
            and comparison.cosine_distance <= self.cosine_distance
        )


def bound(dtype: str, noise: Comparison) -> Bound:
    multiple = NOISE_MULTIPLE[dtype]
    return Bound(
        relative=max(multiple * noise.relative, RELATIVE_FLOOR[dtype]),
        cosine_distance=max(multiple**2 * noise.cosine_distance, COSINE_DISTANCE_FLOOR[dtype]),
        noise=noise,
    )


def compare(candidate: torch.Tensor, reference: torch.Tensor) -> Comparison:
    """Cosine similarity of the flattened logits, max abs diff, and the logits' scale."""
    a, b = candidate.detach().double().flatten(), reference.detach().double().flatten()
    if a.shape != b.shape:
        return Comparison(cosine=float("nan"), max_abs_diff=float("inf"), scale=0.0)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    return Comparison(cosine, (a - b).abs().max().item(), b.abs().max().item())
