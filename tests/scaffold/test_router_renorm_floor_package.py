"""End to end: Ernie-4.5-MoE's router divides its picked weights by `clamp(sum,
min=config.moe_norm_min)`. The analysis names the field, the package reads it and clamps
alike, so a config whose bound exceeds the sum (moe_norm_min=0.9) verifies; the same
package dividing by the bare sum (the bound accepted and ignored, as before) fails, and
the first divergence is in the MoE block."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.scaffold.testing import seeded_copy, verify_toy

pytest.importorskip("transformers.models.ernie4_5_moe")

CLAMPED = "weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=self.renorm_floor)"
BARE = "weights = weights / weights.sum(dim=-1, keepdim=True)"


def test_the_analysis_names_the_bound_field():
    from codegen.analyze import analyze

    assert analyze("ernie4_5_moe").moe.norm_topk_floor == "moe_norm_min"
    assert analyze("qwen3_moe").moe.norm_topk_floor is None  # the bare sum


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from codegen.cli import main

    models = tmp_path_factory.mktemp("built") / "models"
    assert main(["scaffold", "ernie4_5_moe", "--out", str(models)]) == 0
    return models


def _large_bound_case():
    from codegen.verify.run import Case
    from codegen.verify.tiny_config import tiny_config

    return Case("ernie4_5_moe+moe_norm_min", tiny_config("ernie4_5_moe", moe_norm_min=0.9))


def test_the_package_reads_the_bound(built):
    from codegen.models import load_spec
    from codegen.verify.tiny_config import tiny_config

    assert CLAMPED in (built / "ernie4_5_moe" / "model.py").read_text()
    args = load_spec("ernie4_5_moe", built).args
    assert args.from_hf_config(tiny_config("ernie4_5_moe", moe_norm_min=0.9)).renorm_floor == 0.9


def test_a_large_bound_verifies(built):
    (result,) = verify_toy(built, "ernie4_5_moe", case=_large_bound_case(), gradients=False)
    assert result.status == "pass", result.to_json()


def test_the_bare_sum_fails_in_the_moe_block(tmp_path, built):
    models = seeded_copy(built, tmp_path / "models", "ernie4_5_moe", CLAMPED, BARE)
    (result,) = verify_toy(models, "ernie4_5_moe", case=_large_bound_case(), gradients=False)
    row = result.to_json()
    assert row["status"] == "fail", row
    assert ".moe" in (row.get("first_divergence") or ""), row
