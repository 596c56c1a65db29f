"""The coverage sweep moves each verified package's value fields: a package that ignores a
config value HF's code reads (here an epsilon written into the code) passes verify, whose
toy holds the default value, and fails its coverage row, the field and the first diverging
module named; a field the package refuses in one line is listed, not a failure."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

import codegen.scaffold.pipeline
from codegen.scaffold.testing import seed

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "coverage.py"
_spec = importlib.util.spec_from_file_location("coverage_sweep", SCRIPT)
coverage_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(coverage_sweep)

CONFIGS = "self.attention_norm = RMSNorm(args.dim, args.norm_eps)"
HARD_CODED = "self.attention_norm = RMSNorm(args.dim, 1e-06)"  # the toy's value, fixed


def _row(model_type: str, fields: list[dict] | None, passed: bool = True) -> dict:
    return {
        "model_type": model_type,
        "category": "decoder",
        "reference": "llama",
        "rules": [],
        "unsupported": [],
        "verify": {"passed": passed},
        "fields": fields,
    }


def test_the_summary_and_report_count_the_moved_fields():
    moved = [
        {"field": "rms_norm_eps", "value": 0.5, "status": "pass"},
        {"field": "hidden_act", "value": "relu", "status": "refused", "why": "silu only"},
    ]
    failing = [{"field": "layer_norm_epsilon", "value": 0.5, "status": "fail", "why": "norm"}]
    rows = [_row("one", moved), _row("two", failing)]
    coverage_sweep._fail_on_fields(rows[1]["verify"], failing)
    assert rows[1]["verify"] == {
        "passed": False,
        "error": "value field layer_norm_epsilon=0.5: fail: norm",
    }
    line = coverage_sweep.summary(rows)
    assert line.startswith(
        "coverage: 1/2 decoder-only causal LMs scaffold + verify (fp32 and "
        "bf16, every config switch setting, every value field moved)"
    )
    assert "; value fields: 3 moved, 1 pass, 1 refused, 1 fail" in line
    table = coverage_sweep.markdown(rows)
    assert "| 1/1/0 (refused: hidden_act) |" in table
    assert "| 0/0/1 |" in table and "value field layer_norm_epsilon=0.5: fail: norm" in table
    # --no-fields: nothing moved, nothing claimed
    assert "value field" not in coverage_sweep.summary([_row("one", None)])


@pytest.mark.slow
def test_a_package_ignoring_a_field_fails_its_coverage_row_naming_it(tmp_path, monkeypatch):
    scaffold_into = codegen.scaffold.pipeline.scaffold_into

    def scaffold_seeded(models, reference, name, *args, **kwargs):
        scaffold_into(models, reference, name, *args, **kwargs)
        seed(models, name, CONFIGS, HARD_CODED)

    monkeypatch.setattr(codegen.scaffold.pipeline, "scaffold_into", scaffold_seeded)
    pythons = []  # the Python processes the sweep starts (ruff's are not)
    popen = subprocess.Popen

    def counted(command, *args, **kwargs):
        if command[0] == sys.executable:
            pythons.append(command)
        return popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counted)
    (row,) = coverage_sweep.sweep_all(["llama"], tmp_path, verify=True, parallel=(), jobs=1)
    # verify and the field moves ran in one worker: torch and transformers imported once
    assert [command[1:4] for command in pythons] == [
        ["-m", "codegen.verify.package_worker", "llama"]
    ], pythons
    verdict = row["verify"]
    assert verdict["passed"] is False, row
    assert row["fields"], row  # verify alone passed: the toy holds the hard-coded value
    assert verdict["error"].startswith("value field rms_norm_eps=0.5: fail: "), verdict
    assert "layers.0.attention_norm" in verdict["error"], verdict
    assert "hidden_act" in coverage_sweep._fields(row)["pass"]  # the FFN follows the name
    assert coverage_sweep.summary([row]).startswith("coverage: 0/1 decoder-only")


def _worker(tmp_path, source: str) -> list[str]:
    script = tmp_path / "worker.py"
    script.write_text(source)
    return [sys.executable, str(script)]


VERIFIED = 'print(\'{"stage": "verify", "results": []}\', flush=True)\n'


def test_each_stage_of_the_worker_has_its_own_time_limit(tmp_path, monkeypatch):
    """verify's limit still bounds verify, and the field moves get their own after it: a
    worker stuck in its second stage is killed, the first stage's line kept."""
    monkeypatch.setattr(coverage_sweep, "TIMEOUT", 2)
    started = time.perf_counter()
    stuck = _worker(tmp_path, VERIFIED + "import time\ntime.sleep(60)\n")
    stages, why = coverage_sweep._run_stages(stuck)
    assert time.perf_counter() - started < 30  # killed, not waited for
    assert stages == {"verify": {"stage": "verify", "results": []}}
    assert why.replace(coverage_sweep.STAGE, "fields") == "fields took over 2 s"


def test_a_worker_that_dies_gives_its_last_line_as_the_reason(tmp_path):
    dying = _worker(tmp_path, VERIFIED + "import sys\nsys.exit('MemoryError: out of memory')\n")
    stages, why = coverage_sweep._run_stages(dying)
    assert list(stages) == ["verify"]
    assert why == "MemoryError: out of memory"


def test_field_moves_the_worker_never_finished_fail_the_row(monkeypatch):
    passed = {"case": "llama", "status": "pass", "cosine": 1.0, "max_abs_diff": 0.0}
    verified = {"verify": {"stage": "verify", "results": [passed]}}
    monkeypatch.setattr(
        coverage_sweep, "_run_stages", lambda command: (verified, "{stage} took over 300 s")
    )
    verdict, moved = coverage_sweep.verify_isolated(Path("models"), "llama")
    assert verdict["passed"] is True
    assert moved == [
        {"field": "-", "status": "error", "why": "the value-field moves took over 300 s"}
    ]
    coverage_sweep._fail_on_fields(verdict, moved)
    assert verdict["error"] == "value field -: error: the value-field moves took over 300 s"
    # verify itself overran: no field is moved, the row says which stage
    monkeypatch.setattr(
        coverage_sweep, "_run_stages", lambda command: ({}, "{stage} took over 300 s")
    )
    assert coverage_sweep.verify_isolated(Path("models"), "llama") == (
        {"passed": False, "error": "verify took over 300 s"},
        None,
    )
