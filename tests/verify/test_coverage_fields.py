"""The coverage sweep moves each verified package's value fields: a package that ignores a
config value HF's code reads (here an epsilon written into the code) passes verify, whose
toy holds the default value, and fails its coverage row, the field and the first diverging
module named; a field the package refuses in one line is listed, not a failure."""

from __future__ import annotations

import importlib.util
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
    (row,) = coverage_sweep.sweep_all(["llama"], tmp_path, verify=True, parallel=(), jobs=1)
    verdict = row["verify"]
    assert verdict["passed"] is False, row
    assert row["fields"], row  # verify alone passed: the toy holds the hard-coded value
    assert verdict["error"].startswith("value field rms_norm_eps=0.5: fail: "), verdict
    assert "layers.0.attention_norm" in verdict["error"], verdict
    assert "hidden_act" in coverage_sweep._fields(row)["refused"]
    assert coverage_sweep.summary([row]).startswith("coverage: 0/1 decoder-only")
