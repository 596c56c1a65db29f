"""The ablation benchmarks in scripts/ run as their docstrings say (`python scripts/X.py`
from a checkout: the root, which holds `references`, is not on the path by itself) and
compare the same model both ways (a logit difference of 0)."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize(
    ("script", "ratio"),
    [("bench_fused_projections.py", "fused/base"), ("bench_rmsnorm.py", "house/hf_norms")],
)
def test_the_ablation_runs_and_compares_one_model(script, ratio, tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # not the checkout: the script finds its root itself
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert ratio in done.stdout
    assert "max |logit diff| 0.0e+00" in done.stdout
