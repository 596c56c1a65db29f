"""CI runs `scripts/bench_fp8.py`: it must keep calling the fp8 release writer as that
writer is now (it once passed no layout and broke only there, after the tests were green)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_fp8.py"


def test_the_fp8_benchmark_runs_and_prints_its_ratio():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "qwen3", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fp8 load / bf16 load: median" in done.stdout
