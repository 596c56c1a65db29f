"""The coverage sweep's time budget: on a machine slower than expected, `--budget` gives a
partial report that says so instead of running past CI's time limit."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "coverage.py"
_spec = importlib.util.spec_from_file_location("coverage_sweep", SCRIPT)
coverage_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(coverage_sweep)


def test_a_model_whose_turn_comes_after_the_deadline_is_listed_as_not_swept(tmp_path):
    rows = coverage_sweep.sweep_all(
        ["llama", "qwen3"], tmp_path, verify=False, parallel=(), jobs=1, deadline=time.time()
    )
    assert [r["category"] for r in rows] == [coverage_sweep.NOT_SWEPT] * 2
    line = coverage_sweep.summary(rows)
    assert line.startswith("coverage (partial: the time budget ran out, 2 not swept): ")
    assert "0 causal-LM model types swept" in line
    assert "Not swept (time budget): llama, qwen3" in coverage_sweep.markdown(rows)


def test_a_model_started_before_the_deadline_is_swept(tmp_path):
    (row,) = coverage_sweep.sweep_all(
        ["llama"], tmp_path, verify=False, parallel=(), jobs=1, deadline=time.time() + 600
    )
    assert row["category"] == "decoder" and row["reference"] == "llama"
    assert not coverage_sweep.summary([row]).startswith("coverage (partial")


def test_the_crosscheck_is_skipped_when_the_time_left_is_short():
    rows = [{"category": "decoder"}] * 100
    assert coverage_sweep._short_of_time(rows, None, jobs=2) == ""
    assert coverage_sweep._short_of_time(rows, time.time() + 10_000, jobs=2) == ""
    line = coverage_sweep._short_of_time(rows, time.time() + 10, jobs=2)
    assert line.startswith("cross-check and renamed remote-code folders skipped: ")
    assert "about 900 s needed" in line


def test_the_script_exits_zero_with_a_partial_report(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--only",
            "llama",
            "--budget",
            "0.001",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "coverage (partial: the time budget ran out, 1 not swept)" in done.stdout
    assert "cross-check and renamed remote-code folders skipped" in done.stdout
    assert "Not swept (time budget): llama" in (tmp_path / "coverage.md").read_text()
