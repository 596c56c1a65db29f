"""Logit comparison, with pass bounds calibrated on the HF model's own numerical noise.

A fixed tolerance is either loose enough to hide real bugs (gelu vs tanh-gelu stays under
1e-4 x max|logit|; a dropped causal mask keeps bf16 cosine above 0.999) or tight enough to
fail honest reorderings of a matmul. So each run measures how much HF itself moves when
nothing is wrong, on the same config and tokens, and holds the package to a small multiple:

- fp32: HF with its default attention kernel vs HF eager attention. Both are correct; their
  difference is pure reduction-order noise.
- bf16, against fp32: HF in bf16 vs HF in fp32: what bf16 rounding alone costs. The package
  in bf16 is compared with HF in fp32 and must cost at most a small multiple of that.
- bf16, same dtype: the package in bf16 vs HF in bf16 (same weights, same dtype), held to a
  small multiple of what a choice of attention kernel moves the bf16 logits: HF's default vs
  its eager kernel, or, where those agree bit for bit, the package's fused kernel vs the
  same call computed explicitly (`kernels.py`); with a floor where that is zero too. HF
  models with their eager kernel only (GPT-J, GPT-Neo, XGLM, BERT-style heads) give no
  sample of their own while the package runs the fused kernel: measured (AMX), its fused
  kernel alone moves roformer's and megatron-bert's bf16 logits by 1.0e-2..1.1e-2 of HF's
  eager ones, which the floor failed, and computed explicitly they are HF's bit for bit.

Why two bf16 checks: bf16 costs HF more than a misplaced rounding does. A package that
rounds where HF computes in fp32 (a norm weight applied to the bf16-rounded normalised
value, a router projected in bf16) moves its logits against HF's fp32 ones by about as much
as bf16 itself, so the first check catches it only when the CPU's bf16 kernels happen to
keep HF close to its fp32 (oneDNN's AVX512-BF16 kernels: caught; its AMX ones: missed).
Against HF in bf16 the common bf16 cost cancels: an honest port computes the same roundings
(most verified packages give HF's bf16 logits bit for bit) or moves them about as much as
HF's eager attention moves them against its fused kernel; a misplaced rounding moves them
regardless of the CPU.

And a stage check, because a lost fp32 upcast at a discrete choice can hide inside that
kernel noise (a bf16 router flips near-tied experts, as the eager kernel's roundings
flip others): in the same-dtype run every paired module returns its output in the dtype
HF's module returns (`divergence.narrowed_stage`): a module HF computes and returns in fp32
and the package returns in bf16 fails, named. The dtype is decided by the code, not the
CPU, so this needs no bound. An fp32 output whose values bf16 holds exactly was computed in
bf16 and widened after (`F.linear(x, w).float()`): the package's bf16 rounds nothing there.

Why not judge each stage in bf16 (a module given HF's exact input must give HF's exact
output): measured, honest packages reorder single bf16 roundings as much as the defects
do. With the input equal bit for bit, flint's norm weight applied in bf16 changes 25% of
the norm's outputs by one bf16 step; honest mixtral's expert sum changes 48% of its
outputs, falcon's bias added to the fused matmul instead of after the rounded one 97%,
gpt2's tanh-gelu 52%. What tells them apart is what the logits show against HF's own
kernel noise, so the stage search only names the culprit (`run._locate`) after the logits
failed.

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
# the same-dtype bf16 check (package bf16 vs HF bf16): how many times HF's bf16 kernel noise
# (default vs eager attention, both bf16) the package may differ by; squared for the cosine
# distance, as above. Measured (AMX kernels) on 18 verified types, every switch setting:
# most packages give HF's bf16 logits bit for bit; mixtral, gpt2, opt, bloom, falcon,
# gpt_neox, olmo2 reorder some bf16 roundings and stay within the bound, falcon's untied
# setting at it (1.3e-2 of 1.3e-2: HF adds Falcon's biases after the rounded matmul)
SAME_DTYPE_MULTIPLE = 2.0
# the floors of the same-dtype check, where both kernel samples agree bit for bit (HF with
# one kernel, a package without a fused call: flint). Honest bloom moves its logits by 6e-3
# relative / 1e-5 cosine distance (layer norm and ALiBi roundings in another order);
# flint's norm weight applied to the bf16-rounded value by 1.3e-2..6.6e-2 / 8e-5..2.4e-4
SAME_DTYPE_RELATIVE_FLOOR = 1e-2
SAME_DTYPE_COSINE_FLOOR = 3e-5
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


def same_dtype_bound(noise: Comparison) -> Bound:
    """The bound of the package in bf16 against HF in bf16, from the bf16 kernel noise (HF's
    default attention against its eager one, or where they agree bit for bit the package's
    fused attention against its explicit formula: `run._same_dtype`)."""
    multiple = SAME_DTYPE_MULTIPLE
    return Bound(
        relative=max(multiple * noise.relative, SAME_DTYPE_RELATIVE_FLOOR),
        cosine_distance=max(multiple**2 * noise.cosine_distance, SAME_DTYPE_COSINE_FLOOR),
        noise=noise,
    )


def compare(candidate: torch.Tensor, reference: torch.Tensor) -> Comparison:
    """Cosine similarity of the flattened logits, max abs diff, and the logits' scale."""
    a, b = candidate.detach().double().flatten(), reference.detach().double().flatten()
    if a.shape != b.shape:
        return Comparison(cosine=float("nan"), max_abs_diff=float("inf"), scale=0.0)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    return Comparison(cosine, (a - b).abs().max().item(), b.abs().max().item())
