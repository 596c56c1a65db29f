"""Time `codegen scaffold` for one model, without verify: analyze + plan + transforms + write.

Each model is scaffolded in a fresh subprocess (`codegen scaffold MODEL --out TMP`, so
interpreter start-up and imports count, as a user sees them), next to a baseline run of
`python -c "import libcst"` in the same loop. Prints seconds per model (wall, and CPU of the
child process, which a busy machine inflates far less), the ratios to the baseline, and
whether the 2 s budget holds on each measure.

Children run with bytecode caches, as an installed codegen has them: in a private
PYTHONPYCACHEPREFIX, filled by one untimed run of each model first. Without it a machine with
PYTHONDONTWRITEBYTECODE set compiles every codegen module from source on every run (~0.3 s
of a scaffold), a cost no user with a normal install pays.

    python scripts/bench_scaffold.py [MODEL ...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODELS = ["llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v3", "mistral", "gemma"]
BUDGET_SECONDS = 2.0


_ENV = dict(os.environ)


def timed(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child, exit code): CPU time stays meaningful when
    other work shares the machine; wall time is what a user waits on an idle one."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=_ENV)
    return time.perf_counter() - started, _children_cpu() - cpu_before, done.returncode


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="bench_scaffold_pycache_")
    _ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    _ENV["PYTHONPYCACHEPREFIX"] = cache
    try:
        _run(args)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _run(args) -> None:
    baseline = [sys.executable, "-c", "import libcst"]
    timed(baseline)  # bytecode caches of the interpreter's and libcst's modules
    worst = worst_cpu = 0.0
    for model in args.models or DEFAULT_MODELS:
        walls, cpus, bases, base_cpus, status = [], [], [], [], 0
        with tempfile.TemporaryDirectory() as directory:  # untimed: bytecode caches
            timed(_command(model, str(Path(directory) / "models")))
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as directory:
                wall, cpu, status = timed(_command(model, str(Path(directory) / "models")))
            walls.append(wall)
            cpus.append(cpu)
            base_wall, base_cpu, _ = timed(baseline)
            bases.append(base_wall)
            base_cpus.append(base_cpu)
        wall, cpu, base, base_cpu = map(statistics.median, (walls, cpus, bases, base_cpus))
        verdict = "written" if status == 0 else "no complete plan (timed up to the refusal)"
        worst, worst_cpu = max(worst, wall), max(worst_cpu, cpu)
        print(
            f"{model:<12} scaffold {wall:5.2f} s wall {cpu:5.2f} s cpu   "
            f"import libcst {base:5.2f} s wall {base_cpu:5.2f} s cpu   "
            f"ratio {wall / base:4.1f}x wall {cpu / base_cpu:4.1f}x cpu   {verdict}"
        )
    print(
        f"slowest: {worst:.2f} s wall ({_verdict(worst)}), {worst_cpu:.2f} s cpu "
        f"({_verdict(worst_cpu)}); budget {BUDGET_SECONDS:.1f} s"
    )


def _command(model: str, out: str) -> list[str]:
    return [sys.executable, "-m", "codegen.cli", "scaffold", model, "--out", out]


def _verdict(seconds: float) -> str:
    return "OK" if seconds < BUDGET_SECONDS else "OVER"


if __name__ == "__main__":
    main()
