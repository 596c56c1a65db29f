"""Benchmark: wall time of a full `codegen verify` of small models, against a baseline.

The baseline, run in the same process on the same toy config, is what any parity check
must pay at least: build the random HF model, save it as safetensors, load it back and run
it once on verify's inputs. The ratio says what the oracle adds on top (calibration runs,
the package, gradients, export, both dtypes); the seconds are compared with the 15 s
budget for one small model.

    python scripts/bench_verify.py [MODEL ...]        (default: llama qwen3_moe)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = 15.0


def baseline_seconds(model_type: str) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from codegen.verify.hf_checkpoint import random_hf_model, save_checkpoint
    from codegen.verify.run import make_inputs
    from codegen.verify.tiny_config import tiny_config

    started = time.perf_counter()
    config = tiny_config(model_type)
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(random_hf_model(config), Path(directory))
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        with torch.no_grad():
            for item in make_inputs(config.vocab_size):
                model(input_ids=item.tokens, position_ids=item.positions)
    return time.perf_counter() - started


def verify_seconds(name: str) -> tuple[float, int, bool]:
    from codegen.models import load_spec
    from codegen.verify.cases import default_cases
    from codegen.verify.run import verify_case

    started = time.perf_counter()
    spec = load_spec(name)
    results = [r for case in default_cases(spec) for r in verify_case(spec, case, ["fp32", "bf16"])]
    ok = not any(r.status == "fail" for r in results)
    return time.perf_counter() - started, len(results), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["llama", "qwen3_moe"])
    args = parser.parse_args()
    import torch
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.set_num_threads(1)
    baseline_seconds("llama")  # warm-up: imports and first-call costs out of both figures
    for name in args.models:
        from codegen.models import load_spec

        model_type = sorted(load_spec(name).supported_model_types)[0]
        base = baseline_seconds(model_type)
        seconds, results, ok = verify_seconds(name)
        print(
            f"verify {name}: {seconds:.1f} s for {results} results ({'pass' if ok else 'FAIL'}); "
            f"baseline {base:.2f} s; ratio {seconds / base:.1f}x; "
            f"budget {BUDGET_SECONDS:.0f} s: {'within' if seconds <= BUDGET_SECONDS else 'OVER'}"
        )


if __name__ == "__main__":
    main()
