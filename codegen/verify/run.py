"""The verification protocol for one model package (see ARCHITECTURE.md).

1. a toy config (or exactly the given one); 2. a random HF model saved as safetensors and
loaded through the package's adapter with strict key checks; 3. the same tokens through
both models, logits compared per dtype; 4. the adapter round trip; 5. on failure, the
first diverging module.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from codegen.spec import ModelSpec
from codegen.verify.compare import DTYPES, THRESHOLDS, compare
from codegen.verify.divergence import find_divergence
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.tiny_config import SEQ_LEN

BATCH = 2
# relative output difference above which a module counts as diverged, per dtype
DIVERGENCE_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}


@dataclass
class VerifyResult:
    model: str
    model_type: str
    case: str
    dtype: str
    passed: bool = False
    cosine: float | None = None
    max_abs_diff: float | None = None
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    roundtrip_exact: bool | None = None
    first_divergence: str | None = None
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Case:
    """One HF config to verify against, with a short label (e.g. "tied")."""

    label: str
    config: object


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def verify_case(
    spec: ModelSpec, case: Case, dtypes: list[str], seed: int = 0
) -> list[VerifyResult]:
    """Run the protocol for one config; one result per dtype."""
    _quiet_transformers()
    started = time.perf_counter()
    config = case.config
    results = [VerifyResult(spec.name, config.model_type, case.label, dtype) for dtype in dtypes]
    with tempfile.TemporaryDirectory() as directory:
        try:
            save_checkpoint(random_hf_model(config, seed), Path(directory))
            checkpoint = load_checkpoint(Path(directory))
            args, house_model, adapter = spec.build(config)
            unexpected = adapter.unmapped_keys(checkpoint)
            mapped = {key: value for key, value in checkpoint.items() if key not in unexpected}
            house_state = adapter.from_hf(mapped)
            missing, extra = house_model.load_state_dict(house_state, strict=False)
            roundtrip = _roundtrip_exact(adapter, mapped) and not unexpected
            house_model.eval()
        except Exception as err:  # a broken package must yield a FAIL line, not a traceback
            for result in results:
                result.error = f"{type(err).__name__}: {err}"
                result.seconds = time.perf_counter() - started
            return results
        tokens = torch.randint(0, config.vocab_size, (BATCH, SEQ_LEN), generator=_generator(seed))
        for result in results:
            result.missing_keys = sorted(missing)
            result.unexpected_keys = sorted(unexpected) + sorted(extra)
            result.roundtrip_exact = roundtrip
            # fresh fp32 weights per dtype: a model cast to bf16 and back would be rounded
            house_model.to(torch.float32).load_state_dict(house_state, strict=False)
            _compare_in_dtype(result, Path(directory), house_model, adapter, tokens)
            result.seconds = time.perf_counter() - started
    return results


def _compare_in_dtype(result, directory: Path, house_model, adapter, tokens) -> None:
    """Logits of both models in `result.dtype`, verdict, and the divergence on failure.

    The HF side is loaded from the saved files with `from_pretrained(dtype=...)`, the way
    users load checkpoints: that keeps the buffers HF holds in fp32 (rope frequencies,
    router correction biases) in fp32, which a blanket `.to(bf16)` would round.
    """
    from transformers import AutoModelForCausalLM

    dtype = DTYPES[result.dtype]
    threshold = THRESHOLDS[result.dtype]
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).eval()
        house_model.to(dtype)
        with torch.no_grad():
            reference = hf_model(input_ids=tokens).logits
            logits = house_model(tokens)
    except Exception as err:
        result.error = f"{type(err).__name__}: {err}"
        return
    comparison = compare(logits, reference)
    result.cosine, result.max_abs_diff = comparison.cosine, comparison.max_abs_diff
    keys_ok = not result.missing_keys and not result.unexpected_keys
    result.passed = comparison.passes(threshold) and keys_ok and result.roundtrip_exact
    if not comparison.passes(threshold):
        divergence = find_divergence(
            adapter, house_model, hf_model, tokens, DIVERGENCE_TOLERANCE[result.dtype]
        )
        result.first_divergence = None if divergence is None else str(divergence)


def _roundtrip_exact(adapter, checkpoint: dict[str, torch.Tensor]) -> bool:
    """to_hf(from_hf(sd)) reproduces every checkpoint tensor, key for key, bit for bit."""
    back = adapter.to_hf(adapter.from_hf(checkpoint))
    if set(back) != set(checkpoint):
        return False
    return all(torch.equal(back[key], checkpoint[key]) for key in checkpoint)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
