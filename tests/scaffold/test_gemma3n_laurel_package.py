"""End to end: gemma3n's Laurel branch (a low-rank residual branch beside the attention, on
its normed input, summed with the attention's residual sum and divided by sqrt(2)), read
from the code's structure, planned, scaffolded and verified against the folder's own code.
Seeded defects, each a slip of the branch, fail verify and name the module where it lives.

The HF side is transformers' gemma3n text decoder as a renamed remote-code folder with AltUp
and the per-layer inputs taken out and Laurel kept (`gemma3n_fixture.derive(laurel=True)`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gemma3n_fixture import NAME, derive

from codegen.analyze.analysis import analyze
from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

BRANCH = {
    "module": "laurel",
    "down": "linear_left",
    "up": "linear_right",
    "norm": "post_laurel_norm",
    "rank_field": "laurel_rank",
    "divisor": 2**0.5,
}
SCALED_SUM = "h = (h + self.branch(attention_input)) / sqrt(2)"


def test_gemma3n_reads_the_branch_and_its_division_is_no_residual_scale():
    block = analyze("gemma3n_text").block
    assert block.residual_scale is False
    assert block.low_rank_branch == {**BRANCH, "rank": 64}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive(tmp_path_factory.mktemp("hub"), laurel=True)


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, {"low_rank_branch"})
    assert target.features.block.residual_scale is False
    assert "residual_scale" not in {step.rule for step in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def package(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _verify(folder: Path, models: Path, capsys, *options: str) -> list[dict]:
    """verify --json's rows of the base case (the toy config as the folder gives it)."""
    return verify_folder(folder, models, capsys, *options, dtypes=(), switches=False)


def test_package_verifies_in_fp32_and_bf16(folder, package, capsys):
    rows = _verify(folder, package, capsys, "--dtype", "fp32", "--dtype", "bf16")
    assert rows and all(row["status"] == "pass" for row in rows), rows


@pytest.mark.parametrize(
    "old, new, module",
    [
        # the branch on the un-normed stream
        (SCALED_SUM, "h = (h + self.branch(x)) / sqrt(2)", "layers.0.branch"),
        # the sum left undivided: the FFN's norm reads another sum
        (SCALED_SUM, "h = h + self.branch(attention_input)", "layers.0.ffn_norm"),
        # the branch's norm dropped
        (
            "return x + self.norm(self.up(self.down(x)))",
            "return x + self.up(self.down(x))",
            "layers.0.branch",
        ),
        # its projections swapped (one shape here: the rank is the width)
        (
            "return x + self.norm(self.up(self.down(x)))",
            "return x + self.norm(self.down(self.up(x)))",
            "layers.0.branch",
        ),
    ],
    ids=["unnormed_input", "undivided_sum", "no_branch_norm", "swapped_projections"],
)
def test_slips_fail_naming_their_module(tmp_path, folder, package, capsys, old, new, module):
    models = seeded_copy(package, tmp_path / "models", NAME, old, new)
    rows = _verify(folder, models, capsys, "--dtype", "fp32")
    assert rows and all(row["status"] == "fail" for row in rows), rows
    assert all((row.get("first_divergence") or "").startswith(module) for row in rows), rows


def test_shard_plan_splits_the_branchs_rank(folder, package, capsys):
    """tp=2: `down` column-sharded, `up` row-sharded (its output summed whole before the
    branch's norm, which every rank holds)."""
    (row,) = _verify(folder, package, capsys, "--parallel", "tp=2")
    assert row["status"] == "pass", row
