"""The verification protocol for one model package and one HF config (see ARCHITECTURE.md).

1. A random HF model of the config, saved as safetensors the way hub checkpoints are, and
   loaded through the package's adapter with strict key checks (or the package refuses the
   config in `from_hf_config`, in one line).
2. Two inputs through both models: a short sequence (inside every window and original
   context, positions from 0) and a long one (beyond all of them, explicit positions that
   start at `POSITION_OFFSET`, and random ids for the optional id arguments both forwards
   take, `id_inputs.py`). Logits compared per dtype against bounds calibrated on HF's
   own noise in the same run (`compare.py`); in bf16 also against HF in bf16, and every
   paired module's output dtype against HF's.
3. Gradients of every parameter after the same loss (fp32), mapped through the adapter.
4. The adapter round trip (bit exact) and the export direction: the package's weights back
   through `to_hf` into HF's `from_pretrained` give HF's logits exactly.
5. On failure, the first diverging stage (`divergence.py`) or parameter.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from codegen.spec import ModelSpec
from codegen.verify import lifecycle, packing
from codegen.verify.compare import (
    DIVERGENCE_TOLERANCE,
    DTYPES,
    GRADIENT_TOLERANCE,
    Comparison,
    bound,
    compare,
    same_dtype_bound,
)
from codegen.verify.divergence import (
    agreeing_pairs,
    autograd_calls,
    embedding_stage,
    find_divergence,
    module_pairs,
    narrowed_stage,
    relative_diff,
)
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.id_inputs import id_input_rows, random_ids
from codegen.verify.kernels import explicit_attention_kernel
from codegen.verify.parallel import GRADIENT_FLOOR
from codegen.verify.tiny_config import POSITION_OFFSET, SEQ_LEN, SHORT_SEQ_LEN

BATCH = 2


@dataclass
class VerifyResult:
    model: str
    model_type: str
    case: str
    dtype: str
    passed: bool = False
    cosine: float | None = None  # worst over the inputs
    max_abs_diff: float | None = None
    relative_diff: float | None = None  # max_abs_diff / max |HF logits|
    bound: float | None = None  # the calibrated bound on relative_diff
    hf_noise: float | None = None  # HF against itself (relative), what the bound grew from
    # bf16 only: the package against HF in bf16 (worst input, relative), its bound, and the
    # attention-kernel noise in bf16 it grew from (HF's default against its eager kernel, or
    # the package's fused against its explicit one where HF's two agree bit for bit)
    same_dtype_diff: float | None = None
    same_dtype_bound: float | None = None
    same_dtype_noise: float | None = None
    # bf16 only, where HF has one attention kernel: the package's logits with its fused
    # attention against HF's fp32 (relative), when only its run with HF's attention formula
    # was within the bound (`_kernel_choice`: the fused kernel tipped a near-tied choice)
    fused_kernel_diff: float | None = None
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    roundtrip_exact: bool | None = None
    export_matches: bool | None = None
    gradients_match: bool | None = None
    first_gradient_divergence: str | None = None
    first_divergence: str | None = None
    # meta -> to_empty -> init_buffers -> load gives the same model, init_weights starts as HF
    lifecycle_ok: bool | None = None
    lifecycle_failure: str | None = None  # the first buffer/parameter/group that differs
    # documents packed with cu_seqlens (with their id inputs) give HF's logits of each
    # document run alone
    packed_ok: bool | None = None
    packed_failure: str | None = None
    refused: str | None = None  # the package's own one-line refusal of this config
    skipped: str | None = None  # a switch setting transformers itself cannot build or run
    error: str | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """pass, refused (the package says in one line it does not support this setting),
        skipped (transformers itself rejects the setting), or fail."""
        if self.passed:
            return "pass"
        if self.skipped:
            return "skipped"
        return "refused" if self.refused and not self.error else "fail"

    def to_json(self) -> dict:
        return {**asdict(self), "status": self.status}


def declined(results: list[VerifyResult]) -> str | None:
    """The reason when a switch setting was not compared at all: the package refused it in
    one line, or transformers itself cannot build it (for tests to report as a skip)."""
    if results and all(r.status in ("refused", "skipped") for r in results):
        first = results[0]
        return f"{first.case}: {first.status}: {first.refused or first.skipped}"
    return None


@dataclass
class Case:
    """One HF config to verify against, with a short label (e.g. "tied").

    `may_refuse`: a setting of a config switch the package may decline in `from_hf_config`
    (a refusal is a reported gap, not a failure); the config class defaults may not.
    """

    label: str
    config: object
    may_refuse: bool = False
    # why the setting has no config: the config class itself rejects it (reported as
    # skipped, like a setting transformers cannot build)
    rejected: str | None = None


@dataclass(frozen=True)
class Inputs:
    label: str
    tokens: torch.Tensor
    positions: torch.Tensor | None  # None: the model's default, 0..L-1
    # the optional id arguments both forwards take (`id_inputs.py`), by name
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


# where the long input holds the config's padding token: its row of the word table must get
# the gradient HF gives it (none, where HF builds the table with `padding_idx`). (3, 17) put
# an OPT fc1 pre-activation at 8e-8 (of 2.5): a ReLU kink fp32 rounding flips, so the fc1
# bias gradient differed by 1e-2 with no defect
PAD_POSITIONS = (4, 18)
# the seed of the second long input a gradient mismatch must recur on (`_confirmed`)
CONFIRM_SEED = 1


def pad_token(config, vocab: int | None = None) -> int | None:
    """The config's padding token id when it is a row of the word table (`vocab` rows, by
    default the config's vocab_size), else None."""
    pad = getattr(config, "pad_token_id", None)
    vocab = getattr(config, "vocab_size", None) if vocab is None else vocab
    if isinstance(pad, bool) or not isinstance(pad, int) or not isinstance(vocab, int):
        return None
    return pad if 0 <= pad < vocab else None


def vocab_rows(config, word_table_rows: Callable[[], int]) -> int:
    """The ids inputs are drawn below: the config's vocab_size, else (a remote config naming
    it otherwise, `n_tokens`) `word_table_rows()`, the rows of the model's word table (asked
    only then: not every HF model answers `get_input_embeddings`)."""
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and not isinstance(vocab, bool):
        return vocab
    return word_table_rows()


def make_inputs(
    vocab_size: int,
    seed: int = 0,
    pad_token_id: int | None = None,
    id_rows: dict[str, int] | None = None,
) -> list[Inputs]:
    """The short input (default positions) and the long one (explicit positions from
    `POSITION_OFFSET`; `pad_token_id`, when given, at `PAD_POSITIONS` of every row, so the
    gradient check compares the padding row). `id_rows`: the optional id arguments and their
    tables' row counts (`id_inputs.id_input_rows`); the long input gives each random ids, the
    short one none, so both the tables' rows and what the models read without ids are
    compared."""
    generator = torch.Generator().manual_seed(seed)
    short = torch.randint(0, vocab_size, (BATCH, SHORT_SEQ_LEN), generator=generator)
    long = torch.randint(0, vocab_size, (BATCH, SEQ_LEN), generator=generator)
    if pad_token_id is not None:
        long[:, list(PAD_POSITIONS)] = pad_token_id
    offset = (torch.arange(SEQ_LEN) + POSITION_OFFSET).expand(BATCH, -1)
    extra = random_ids(id_rows or {}, long.shape, generator)
    return [Inputs("short", short, None), Inputs(f"long@{POSITION_OFFSET}", long, offset, extra)]


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def verify_case(
    spec: ModelSpec,
    case: Case,
    dtypes: list[str],
    seed: int = 0,
    gradients: bool = True,
    export: bool = True,
) -> list[VerifyResult]:
    """Run the protocol for one config; one result per dtype."""
    _quiet_transformers()
    started = time.perf_counter()
    config = case.config
    model_type = case.label.partition(":")[0].partition("+")[0]
    model_type = getattr(config, "model_type", model_type)
    results = [VerifyResult(spec.name, model_type, case.label, dtype) for dtype in dtypes]

    def finish(
        error: str | None = None, refused: str | None = None, skipped: str | None = None
    ) -> list[VerifyResult]:
        for result in results:
            result.error = result.error or error
            result.refused = refused
            result.skipped = skipped
            result.seconds = time.perf_counter() - started
        return results

    if case.rejected is not None:
        return finish(skipped=f"the config class rejects this setting: {case.rejected}")
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        try:
            hf_model = random_hf_model(config, seed)
            save_checkpoint(hf_model, directory / "hf")
        except Exception as err:
            reason = f"transformers cannot build this config: {_one_line(err)}"
            return finish(skipped=reason) if case.may_refuse else finish(reason)
        if case.may_refuse and _no_width(hf_model):
            return finish(skipped=DEGENERATE)
        try:
            args, house_model, adapter = spec.build(config)
        except NotImplementedError as err:
            refusal = _one_line(err, with_type=False)
            if case.may_refuse:
                return finish(refused=refusal)
            return finish(f"the package refuses its own default config: {refusal}")
        except Exception as err:  # a broken package yields a FAIL line, not a traceback
            return finish(_one_line(err))
        word_table = hf_model.get_input_embeddings  # called only where vocab_size is missing
        vocab = vocab_rows(config, lambda: word_table().num_embeddings)
        inputs = make_inputs(vocab, seed, pad_token(config, vocab))
        id_rows = id_input_rows(hf_model, house_model, inputs[0].tokens)
        del hf_model
        try:
            checkpoint = load_checkpoint(directory / "hf")
            unexpected = adapter.unmapped_keys(checkpoint)
            mapped = {key: value for key, value in checkpoint.items() if key not in unexpected}
            house_state = adapter.from_hf(mapped)
            missing, extra = house_model.load_state_dict(house_state, strict=False)
            roundtrip = _roundtrip_exact(adapter, mapped) and not unexpected
            house_model.eval()
        except Exception as err:
            return finish(_one_line(err))
        inputs = make_inputs(vocab, seed, pad_token(config, vocab), id_rows)
        try:
            lifecycle_failure = lifecycle.check(
                spec, config, house_model, house_state, adapter, inputs, seed
            )
        except Exception as err:
            lifecycle_failure = f"lifecycle: {_one_line(err)}"
        try:
            hf32, reference, noise32 = _hf_reference(directory / "hf", inputs)
        except Exception as err:
            reason = f"transformers cannot run this config: {_one_line(err)}"
            return finish(skipped=reason) if case.may_refuse else finish(reason)
        try:
            packed_failure = packing.check(house_model, hf32, vocab, noise32[-1], seed, id_rows)
        except Exception as err:
            packed_failure = f"packed: {_one_line(err)}"
        for result in results:
            result.missing_keys = sorted(missing)
            result.unexpected_keys = sorted(unexpected) + sorted(extra)
            result.roundtrip_exact = roundtrip
            # fresh fp32 weights per dtype: a model cast to bf16 and back would be rounded
            house_model.to(torch.float32).load_state_dict(house_state, strict=False)
            _compare_in_dtype(
                result,
                directory / "hf",
                house_model,
                house_state,
                inputs,
                (hf32, reference, noise32),
            )
            result.seconds = time.perf_counter() - started
        if "fp32" in dtypes and (gradients or export):
            house_model.to(torch.float32).load_state_dict(house_state, strict=False)
            _backward_and_export(
                results,
                directory,
                house_model,
                adapter,
                inputs[-1],
                (reference[-1], noise32[-1]),
                gradients,
                export,
            )
        for result in results:
            result.lifecycle_ok = lifecycle_failure is None
            result.lifecycle_failure = lifecycle_failure
            result.packed_ok = packed_failure is None
            result.packed_failure = packed_failure
            result.passed = result.passed and lifecycle_failure is None and packed_failure is None
    return finish()


def _hf_reference(directory: Path, inputs: list[Inputs]):
    """HF's fp32 logits per input (its default attention kernel) and, per input, the
    comparison of HF eager attention against them: HF's own fp32 noise."""
    model = _load_hf(directory, torch.float32)
    reference = _hf_logits(model, inputs)
    eager = reference  # a model with one attention kernel only: no second opinion
    # the second opinion also runs the experts one by one where HF can: its grouped kernel
    # falls back to per-expert matmuls on weights it finds unaligned (a loaded checkpoint),
    # so which of the two HF runs is chance, and both are HF
    for experts in ("eager", None):
        try:
            eager = _hf_logits(_load_hf(directory, torch.float32, "eager", experts), inputs)
            break
        except Exception:
            continue
    return model, reference, [compare(e, r) for e, r in zip(eager, reference, strict=True)]


def _load_hf(
    directory: Path, dtype: torch.dtype, attention: str | None = None, experts: str | None = None
):
    """The HF side loaded the way users load checkpoints: `from_pretrained(dtype=...)`,
    which keeps the buffers HF holds in fp32 (rope frequencies, router correction biases)
    in fp32 where a blanket `.to(bf16)` would round them."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype}
    if attention:
        kwargs["attn_implementation"] = attention
    if experts:
        kwargs["experts_implementation"] = experts
    model = AutoModelForCausalLM.from_pretrained(directory, **kwargs).eval()
    if experts is None and not _grouped_kernel_fits(model):
        return _load_hf(directory, dtype, attention, "eager")
    return model


def _grouped_kernel_fits(model) -> bool:
    """Whether HF's default experts kernel (`grouped_mm`) takes the model's stacked expert
    weights: it refuses a width whose bytes are not a multiple of 16 (36 in bf16, 37 in
    fp32), which HF's per-expert loop and the package run. HF's experts are the modules its
    `use_experts_implementation` decorator set up (they carry its `has_gate` flag)."""
    experts = [module for module in model.modules() if hasattr(module, "has_gate")]
    return all(
        size * param.element_size() % 16 == 0
        for module in experts
        for param in module.parameters()
        if param.dim() == 3
        for size in param.shape[1:]
    )


def _hf_logits(model, inputs: list[Inputs]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [
            model(input_ids=item.tokens, position_ids=item.positions, **item.extra).logits.float()
            for item in inputs
        ]


def _dtype_noise(directory, dtype, hf_model, inputs, reference):
    """What the dtype alone costs HF, per input: the worse of its two attention kernels
    against fp32. One sample understates it where rounding flips discrete choices (an MoE
    router's top-k), so the second kernel's rounding is a second sample.

    Also returns HF's logits in the dtype per kernel (default, then eager when the model
    has it): the same-dtype check's reference and noise."""
    samples = [_hf_logits(hf_model, inputs)]
    try:
        samples.append(_hf_logits(_load_hf(directory, dtype, "eager"), inputs))
    except Exception:  # one attention kernel only
        pass
    noises = []
    for index, want in enumerate(reference):
        found = [compare(sample[index], want) for sample in samples]
        noises.append(
            Comparison(
                cosine=min(c.cosine for c in found),
                max_abs_diff=max(c.max_abs_diff for c in found),
                scale=found[0].scale,
            )
        )
    return noises, samples


def _house_logits(model, item: Inputs) -> torch.Tensor:
    if item.positions is None:
        return model(item.tokens, **item.extra)
    return model(item.tokens, positions=item.positions, **item.extra)


def _compare_in_dtype(result, directory, house_model, house_state, inputs, hf_fp32) -> None:
    """Logits of the package in `result.dtype` against HF fp32, within the bound HF's own
    noise sets; in a lower precision also against HF in that dtype, within HF's own kernel
    noise there, and each paired module's output dtype against HF's; the divergence on
    failure."""
    dtype = DTYPES[result.dtype]
    hf32, reference, noise32 = hf_fp32
    # (HF's logits in the dtype per kernel, module pairs, the package's logits with its
    # fused attention computed explicitly)
    same = None
    try:
        if result.dtype == "fp32":
            hf_model, noises = hf32, noise32
        else:
            hf_model = _load_hf(directory, dtype)
            noises, samples = _dtype_noise(directory, dtype, hf_model, inputs, reference)
            same = (samples, module_pairs(house_model, hf32))  # fp32 weights pair
        house_model.to(dtype)
        with torch.no_grad():
            logits = [_house_logits(house_model, item).float() for item in inputs]
        narrowed = None
        if same is not None:
            with torch.no_grad(), explicit_attention_kernel():
                explicit = [_house_logits(house_model, item).float() for item in inputs]
            same = (*same, explicit)
            item = inputs[-1]
            narrowed = narrowed_stage(
                house_model, hf_model, item.tokens, item.positions, same[1], item.extra
            )
    except Exception as err:
        result.error = _one_line(err)
        return
    verdicts = []
    for index, (item, got, want, noise) in enumerate(
        zip(inputs, logits, reference, noises, strict=True)
    ):
        comparison, limit = compare(got, want), bound(result.dtype, noise)
        admitted = limit.admits(comparison)
        if not admitted and same is not None:
            comparison, admitted = _kernel_choice(result, same, index, (got, want), limit)
        verdicts.append((admitted, comparison, limit, item))
    failing = [v for v in verdicts if not v[0]]
    same_failing = _same_dtype(result, logits, inputs, same)
    _, comparison, limit, _ = max(
        verdicts, key=lambda v: (not v[0], v[1].relative / max(v[2].relative, 1e-30))
    )
    # the culprit is looked for on the longest failing input: its tokens take the most paths
    # (experts, windows), so a defect shows in the first layer that has it
    item = failing[-1][3] if failing else verdicts[-1][3]
    result.cosine = min(v[1].cosine for v in verdicts)
    result.max_abs_diff = max(v[1].max_abs_diff for v in verdicts)
    result.relative_diff, result.bound = comparison.relative, limit.relative
    result.hf_noise = limit.noise.relative
    keys_ok = not result.missing_keys and not result.unexpected_keys
    result.passed = not failing and keys_ok and bool(result.roundtrip_exact)
    if not failing:
        embedding = embedding_stage(house_model, hf_model, inputs[0].tokens)
        if embedding is not None:
            result.passed = False
            result.first_divergence = f"{embedding} (not bit-exact in {result.dtype})"
            return
    if narrowed is not None:  # a fact of the code, named before any noise-bound verdict
        result.passed = False
        result.first_divergence = f"{narrowed} on the {inputs[-1].label} input"
    elif failing or same_failing is not None:
        result.passed = False
        result.first_divergence = _locate(
            result.dtype,
            directory,
            house_model,
            house_state,
            item if failing else None,
            hf_model,
            same_failing,
            (inputs, reference, noise32),
            same is not None and _one_kernel(same[0]),
        )


def _one_kernel(samples, index: int | None = None) -> bool:
    """Whether HF's logits in the dtype per kernel (default, then eager) agree bit for bit,
    on input `index` or on every input: HF runs one attention kernel there, so its own
    noise never samples a kernel choice. With one kernel loaded the two are the same run."""
    indices = range(len(samples[0])) if index is None else [index]
    return all(torch.equal(samples[0][i], samples[-1][i]) for i in indices)


def _kernel_choice(result, same, index, logits, limit) -> tuple[Comparison, bool]:
    """The verdict on one input against HF in fp32 where the package's fused attention is
    a kernel HF's own noise could not sample: HF has one attention kernel (its two bf16 runs
    agree bit for bit) and the package calls `F.scaled_dot_product_attention`. The package
    is then judged with that call computed by HF's own formula (`kernels.py`), which keeps
    every rounding the package makes outside the kernel: a misplaced rounding (a router
    projected in bf16, a norm weight applied to the rounded value) moves those logits too.
    What it excuses is the fused kernel's own rounding, which can tip a discrete choice HF's
    one kernel leaves alone (inkling2's second and third expert, scores 0.461 and 0.459, a
    bf16 step apart: 0.128 of max|logit| against a bound of 0.015). The fused run's
    difference is kept on `result.fused_kernel_diff` and printed under the verdict."""
    (got, want), samples, explicit = logits, same[0], same[2]
    fused = compare(got, want)
    if not _one_kernel(samples, index):
        return fused, False  # HF's two kernels sampled the kernel choice already
    if torch.equal(explicit[index], got):
        return fused, False  # no fused call: nothing but the package's own roundings
    as_hf = compare(explicit[index], want)
    if not limit.admits(as_hf):
        return fused, False  # apart with HF's formula too: the package's roundings
    result.fused_kernel_diff = max(result.fused_kernel_diff or 0.0, fused.relative)
    return as_hf, True


def _same_dtype(result, logits, inputs, same) -> Inputs | None:
    """The package against HF in the same dtype, per input, within the kernel noise in that
    dtype (`compare.same_dtype_bound`): HF's eager attention against its default or, where
    the two agree bit for bit (HF's default is its eager kernel), the package's fused
    attention computed explicitly against its own (`kernels.py`: the kernel choice HF
    cannot sample there). Not the worse of the two: where routing flips on near ties, a
    package whose roundings are off flips on its own kernel swap as well, and its own
    sample would grow its bound (DeepSeek-V2 with bf16 rope tables: 0.13 against HF's
    0.016). Records the worst input on `result` and returns the last failing input, or
    None."""
    if same is None:
        return None
    samples, explicit = same[0], same[2]
    failing, worst = None, None
    for index, (item, got) in enumerate(zip(inputs, logits, strict=True)):
        want = samples[0][index]
        noise = compare(samples[-1][index], want)  # eager against default
        if _one_kernel(samples, index):  # no fused call in the package either: 0
            own = compare(explicit[index], got)
            noise = Comparison(own.cosine, own.max_abs_diff, noise.scale)
        comparison, limit = compare(got, want), same_dtype_bound(noise)
        ratio = comparison.relative / max(limit.relative, 1e-30)
        ratio = max(ratio, comparison.cosine_distance / max(limit.cosine_distance, 1e-30))
        if worst is None or ratio > worst[0]:
            worst = (ratio, comparison, limit)
        if not limit.admits(comparison):
            failing = item
    _, comparison, limit = worst
    result.same_dtype_diff, result.same_dtype_bound = comparison.relative, limit.relative
    result.same_dtype_noise = limit.noise.relative
    return failing


def _locate(
    dtype: str,
    directory: Path,
    house_model,
    house_state,
    item: Inputs | None,
    hf_in_dtype,
    same_item: Inputs | None = None,
    fp32_reference=None,
    one_kernel: bool = False,
):
    """Name the first diverging stage. A bug visible in bf16 is looked for in fp32 first,
    where stage tolerances are tight, unless the package's fp32 logits agree with HF's on
    that input (`fp32_reference`: the inputs, HF's fp32 logits and noise): a stage apart
    there is modules paired whose outputs mean different things (a BERT-style attention
    that adds the residual and norms it), not the bug, and such pairs are dropped from the
    bf16 search (`agreeing_pairs`). One that only bf16 shows is looked for in bf16: for a
    failure of the same-dtype check (`same_item`), against HF in bf16, the first stage
    whose input still equals HF's bit for bit and whose output does not (the rounding HF
    does not do), with the package's fused attention computed by HF's formula first where HF
    has that one kernel (`one_kernel`: else the kernel choice is always the first stage
    apart), then as it runs (the fused kernel's own rounding is then what is apart); for a
    failure against fp32 (`item`), each stage against HF's own bf16 noise."""
    first = item or same_item
    hf32 = _load_hf(directory, torch.float32)
    house_model.to(torch.float32).load_state_dict(house_state, strict=False)
    pairs = module_pairs(house_model, hf32, _unloaded(house_model, house_state))
    if dtype != "fp32" and _fp32_agrees(house_model, first, fp32_reference):
        pairs = agreeing_pairs(
            house_model,
            hf32,
            first.tokens,
            first.positions,
            pairs,
            DIVERGENCE_TOLERANCE["fp32"],
            first.extra,
        )
    else:
        found = find_divergence(
            house_model,
            hf32,
            first.tokens,
            DIVERGENCE_TOLERANCE["fp32"],
            positions=first.positions,
            pairs=pairs,
            extra=first.extra,
        )
        if found is not None or dtype == "fp32":
            return None if found is None else f"{found} on the {first.label} input"
    house_model.to(DTYPES[dtype])  # rounded from the fp32 weights, as in the comparison
    hf_in_dtype = hf_in_dtype or _load_hf(directory, DTYPES[dtype])
    if same_item is not None:
        found = None
        for explicit in (True, False) if one_kernel else (False,):
            with explicit_attention_kernel() if explicit else contextlib.nullcontext():
                found = find_divergence(
                    house_model,
                    hf_in_dtype,
                    same_item.tokens,
                    0.0,  # bit for bit: the same roundings give the same values
                    positions=same_item.positions,
                    pairs=pairs,
                    extra=same_item.extra,
                )
            if found is not None:
                break
        if found is not None:
            return f"{found} on the {same_item.label} input (against HF in {dtype})"
    if item is None:
        return None
    found = find_divergence(
        house_model,
        hf32,
        item.tokens,
        DIVERGENCE_TOLERANCE["fp32"],
        positions=item.positions,
        hf_noise_model=hf_in_dtype,
        pairs=pairs,
        extra=item.extra,
    )
    return None if found is None else f"{found} on the {item.label} input"


def _fp32_agrees(house_model, item: Inputs, fp32_reference) -> bool:
    """Whether the package (in fp32) gives HF's fp32 logits on `item` within the fp32
    bound; False when there is nothing to compare with."""
    if fp32_reference is None:
        return False
    inputs, reference, noise32 = fp32_reference
    index = next((i for i, known in enumerate(inputs) if known is item), None)
    if index is None:
        return False
    with torch.no_grad():
        logits = _house_logits(house_model, item).float()
    return bound("fp32", noise32[index]).admits(compare(logits, reference[index]))


def _backward_and_export(
    results, directory, house_model, adapter, item, reference, gradients, export
) -> None:
    """Gradient parity and the export direction, fp32, on the long input. A mismatch fails
    every dtype's result: the package is wrong whatever precision it later runs in."""
    try:
        gradient_failure = None
        if gradients:
            gradient_failure = _gradient_mismatch(directory, house_model, adapter, item)
            if gradient_failure is not None:
                vocab_size = reference[0].shape[-1]  # HF's logits on this input
                gradient_failure = _confirmed(
                    directory, house_model, adapter, item, vocab_size, gradient_failure
                )
            if gradient_failure is not None:
                # where the graph itself differs (runs HF cuts from autograd), that is named
                hf_model = _load_hf(directory / "hf", torch.float32)
                cut = autograd_calls(house_model, hf_model, item.tokens, item.positions, item.extra)
                gradient_failure = (
                    f"{cut}; first tensor: {gradient_failure}" if cut else gradient_failure
                )
        exported = (
            _export_matches(directory, house_model, adapter, item, reference) if export else None
        )
    except Exception as err:
        for result in results:
            result.error = result.error or f"backward/export: {_one_line(err)}"
            result.passed = False
        return
    for result in results:
        if gradients:
            result.gradients_match = gradient_failure is None
            result.first_gradient_divergence = gradient_failure
        if export:
            result.export_matches = exported
        if (gradients and gradient_failure) or (export and not exported):
            result.passed = False


def _confirmed(
    directory: Path, house_model, adapter, item: Inputs, vocab_size: int, failure: str
) -> str | None:
    """`failure` if the gradients differ on other tokens too, else None.

    A ReLU-family activation is not differentiable at zero: a pre-activation within float32
    rounding of its kink takes either side depending on the order of a sum, so HF and an
    honest package may disagree on one unit's gradient on one input (an OPT fc1 bias by 1e-2).
    A wrong package differs on any tokens; so a mismatch counts once it is seen again on a
    second long input (other tokens; the padding token where the first had it)."""
    generator = torch.Generator().manual_seed(CONFIRM_SEED)
    tokens = torch.randint(0, vocab_size, item.tokens.shape, generator=generator)
    pads = [i for i in PAD_POSITIONS if i < tokens.shape[1]]
    tokens[:, pads] = item.tokens[:, pads]
    again = Inputs(item.label, tokens, item.positions, item.extra)
    return None if _gradient_mismatch(directory, house_model, adapter, again) is None else failure


def _loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy: the loss the training engines use. Where the logits are cut
    short of the vocabulary (a head stored padded past it), ids past them wrap into them."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        tokens[:, 1:].reshape(-1) % logits.shape[-1],
    )


def _gradient_mismatch(directory: Path, house_model, adapter, item: Inputs) -> str | None:
    """The first checkpoint tensor whose gradient differs, or None.

    HF's gradients are put into checkpoint layout by HF's own `save_pretrained` (parameters
    replaced by their gradients, buffers by zeros), the package's by its adapter's `to_hf`;
    both then name the same tensors the same way.
    """
    hf_model = _load_hf(directory / "hf", torch.float32)
    hf_model.zero_grad()
    logits = hf_model(input_ids=item.tokens, position_ids=item.positions, **item.extra).logits
    _loss(logits, item.tokens).backward()
    with torch.no_grad():
        for param in hf_model.parameters():
            param.data = param.grad if param.grad is not None else torch.zeros_like(param)
        for buffer in hf_model.buffers():
            buffer.zero_()
    save_checkpoint(hf_model, directory / "grad")
    hf_grads = load_checkpoint(directory / "grad")

    house_model.zero_grad()
    _loss(_house_logits(house_model, item), item.tokens).backward()
    grads = {
        name: (param.grad if param.grad is not None else torch.zeros_like(param)).detach()
        for name, param in house_model.named_parameters()
    }
    state = {name: torch.zeros_like(buffer) for name, buffer in house_model.state_dict().items()}
    state.update({name: grad for name, grad in grads.items() if name in state})
    house_hf = adapter.to_hf(state)
    # backward order: the parameter nearest the loss first, so the first mismatch is where
    # the backward pass went wrong, not every parameter upstream of it
    order = [key for name in reversed(list(grads)) for key in _hf_keys(adapter, name, grads[name])]
    order += sorted(set(house_hf) - set(order), key=_natural, reverse=True)
    # a tensor whose gradient is itself at rounding level (a key bias in a layer without RoPE:
    # softmax ignores a shift shared by every key) is measured against the model's gradient
    # scale, not its own, as the parallel check does
    floor = GRADIENT_FLOOR * max(
        (float(g.abs().max()) for g in hf_grads.values() if g.numel() and g.is_floating_point()),
        default=0.0,
    )
    for key in order:
        if key not in hf_grads or key not in house_hf:
            continue
        got, expected = house_hf[key].float(), hf_grads[key].float()
        diff = relative_diff(got, expected)
        if diff > GRADIENT_TOLERANCE and diff != float("inf") and expected.numel():
            diff = float((got - expected).abs().max()) / max(float(expected.abs().max()), floor)
        if diff > GRADIENT_TOLERANCE:
            return f"{key}, relative diff {diff:.2e}"
    return None


def _hf_keys(adapter, name: str, tensor: torch.Tensor) -> list[str]:
    """The checkpoint keys one house tensor becomes, where the adapter can say alone."""
    try:
        return [key for key, _ in adapter.convert_single_to_hf(name, tensor)]
    except Exception:  # an adapter that converts only whole state dicts (fused tensors)
        return []


def _export_matches(directory: Path, house_model, adapter, item: Inputs, reference) -> bool:
    """The package's weights, exported with `to_hf`, loaded by HF's `from_pretrained`,
    reproduce HF's logits: a checkpoint trained in the house format returns to HF. Same
    weights, same code: only HF's own fp32 noise is allowed (MoE kernels on CPU are not
    bit-stable across tensor allocations)."""
    reference, noise = reference
    from safetensors.torch import save_file

    target = directory / "export"
    target.mkdir()
    exported = adapter.to_hf({k: v.detach() for k, v in house_model.state_dict().items()})
    tensors = {key: tensor.contiguous().clone() for key, tensor in exported.items()}
    save_file(tensors, target / "model.safetensors")
    for extra in (directory / "hf").glob("*"):  # config.json, generation config, remote code
        if extra.suffix != ".safetensors" and extra.name != "model.safetensors.index.json":
            (target / extra.name).write_bytes(extra.read_bytes())
    hf_model = _load_hf(target, torch.float32)
    (logits,) = _hf_logits(hf_model, [item])
    return bound("fp32", noise).admits(compare(logits, reference))


def _natural(key: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _roundtrip_exact(adapter, checkpoint: dict[str, torch.Tensor]) -> bool:
    """to_hf(from_hf(sd)) reproduces every checkpoint tensor, key for key, bit for bit,
    except the keys the adapter drops (a None row: weights the logits never read)."""
    back = adapter.to_hf(adapter.from_hf(checkpoint))
    dropped = set(getattr(adapter, "dropped_keys", lambda keys: [])(checkpoint))
    checkpoint = {key: value for key, value in checkpoint.items() if key not in dropped}
    if set(back) != set(checkpoint):
        return False
    return all(torch.equal(back[key], checkpoint[key]) for key in checkpoint)


# an error is reported on one line: longer messages (torch lists every mismatched tensor)
# keep their first sentences and say how much was left out
ERROR_CHARACTERS = 300


DEGENERATE = "degenerate setting: transformers builds a model of width 0, which computes nothing"


def _no_width(hf_model) -> bool:
    """Whether a switch setting built a model whose token embeddings have no width (a config
    branch on `hidden_size != 0`): every logit is 0 on either side, so there is nothing to
    compare, and no checkpoint of the class is like it."""
    try:
        return hf_model.get_input_embeddings().weight.numel() == 0
    except (AttributeError, NotImplementedError):
        return False


def _one_line(err: BaseException, with_type: bool = True) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if len(text) > ERROR_CHARACTERS:
        cut = text.rfind(". ", 0, ERROR_CHARACTERS)
        kept = text[: cut + 1] if cut > 0 else text[:ERROR_CHARACTERS]
        text = f"{kept} ... (+{len(text) - len(kept)} characters)"
    return f"{type(err).__name__}: {text}" if with_type else text


def _unloaded(house_model, house_state) -> frozenset[str]:
    """The package's parameters the converted checkpoint holds no value for."""
    return frozenset(n for n, _ in house_model.named_parameters() if n not in house_state)
