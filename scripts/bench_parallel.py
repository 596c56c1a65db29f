"""Benchmark: wall time of `verify --parallel` against the single-device verify of the same model.

Both run in this one process on the model's toy config (its base case, no switch settings):
the single-device side is `verify_case` in fp32 (HF parity, gradients, export), the
parallel side is each setting's 2-rank check (fork, gloo, the plan applied, logits and every
gradient gathered and compared with the package on one device). The ratio says what
proving the shard plan costs next to proving the package.

    python scripts/bench_parallel.py [MODEL ...]        (default: llama qwen3_moe)
    python scripts/bench_parallel.py phi3 gpt_oss --models /tmp/p11/models   (scaffolded)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def single_seconds(spec, case) -> tuple[float, bool]:
    from codegen.verify.run import verify_case

    started = time.perf_counter()
    results = verify_case(spec, case, ["fp32"])
    return time.perf_counter() - started, not any(r.status == "fail" for r in results)


def parallel_seconds(spec, case, setting: str) -> tuple[float, bool]:
    from codegen.verify.parallel import verify_parallel

    started = time.perf_counter()
    result = verify_parallel(spec, case.config, setting)
    return time.perf_counter() - started, result.passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["llama", "qwen3_moe"])
    parser.add_argument("--models", dest="directory", help="models package (default: references)")
    args = parser.parse_args()
    import torch

    from codegen.models import load_spec
    from codegen.verify.cases import default_cases
    from codegen.verify.parallel import plan_module

    torch.set_num_threads(1)
    for name in args.models:
        spec = load_spec(name, Path(args.directory)) if args.directory else load_spec(name)
        case = default_cases(spec, switches=False)[0]
        plan_module(spec)  # no plan: one line before anything runs
        single_seconds(spec, case)  # warm-up: first-call imports and kernel setup
        single, single_ok = single_seconds(spec, case)
        experts = "experts" in plan_module(spec).PLAN.values()
        settings = ["tp=2", "fsdp=2"] + (["ep=2"] if experts else [])
        print(f"{name}: single-device verify (fp32, 1 case) {single:.2f}s ok={single_ok}")
        for setting in settings:
            seconds, ok = parallel_seconds(spec, case, setting)
            print(f"  --parallel {setting:<7} {seconds:.2f}s  x{seconds / single:.2f}  ok={ok}")


if __name__ == "__main__":
    main()
