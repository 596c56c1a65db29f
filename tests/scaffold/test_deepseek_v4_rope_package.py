"""End to end: DeepSeek-V4's RoPE on the remote-code folder of `v4_rope_fixture.py` (llama
whose config groups its rope parameters under the labels "near" and "far", a base each,
whose attention picks the "far" tables and turns the trailing quarter of each head, in
adjacent pairs, as DeepSeek-V4's does), planned from its analysis (`rope.group` = "far",
`rope.rotated_slice` = "trailing"), scaffolded and verified in fp32 and bf16 for every
switch setting and under tp=2. Seeded defects fail verify naming the first layer's
attention: the leading slice turned, the other group's parameters read, the flat
parameters transformers leaves beside the groups read; without either rule's step the
package fails. The same slice turned in halves (`rotation="halves"`) verifies too; layers
that pick several groups otherwise than by a test choosing one of two labels (a label
indexed out of a tuple) are refused in one line (two labels by a test:
`test_rope_layer_groups_package.py`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from v4_rope_fixture import NAME, PICK, v4_rope_folder

from codegen.scaffold.testing import (
    plan_folder,
    seeded_copy,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

RULES = ("rope_group", "trailing_rotary")
TRAILING = (
    "    passed, turned = x[..., :-rotary_dim], x[..., -rotary_dim:]\n"
    "    return torch.cat((passed, turned * cos + rotate_pairs(turned) * sin), dim=-1)\n"
)
LEADING = (
    "    turned, passed = x[..., :rotary_dim], x[..., rotary_dim:]\n"
    "    return torch.cat((turned * cos + rotate_pairs(turned) * sin, passed), dim=-1)\n"
)
GROUP = f'hf_config.rope_parameters["{PICK}"]'


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return v4_rope_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder, rules=(*RULES, "interleaved_rope", "partial_rotary"))
    rope = target.features.rope
    assert (rope.group, rope.rotated_slice, rope.theta) == (PICK, "trailing", 1.6e5)
    # at the pick in the forward and at the attribute's assignment; at the rotation's cat
    evidence = target.features.evidence
    assert re.match(r"modeling_\w+\.py:\d+, modeling_\w+\.py:\d+ ", evidence["rope.group"])
    assert re.match(r"modeling_\w+\.py:\d+ ", evidence["rope.rotated_slice"])
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned) -> Path:
    models, _ = write_planned(tmp_path_factory.mktemp("built") / "models", planned)
    return models


def _verify(folder: Path, models: Path, capsys, *extra: str) -> list[dict]:
    """verify --json's rows of the base case (the toy config as the folder gives it)."""
    return verify_folder(folder, models, capsys, *extra, dtypes=(), switches=False)


def test_package_verifies(folder, built, capsys):
    package = built / NAME
    assert TRAILING in (package / "rope.py").read_text()
    assert GROUP in (package / "args.py").read_text()
    rows = verify_folder(folder, built, capsys, dtypes=("fp32", "bf16"))
    assert len(rows) >= 2 and all(row["status"] == "pass" for row in rows), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, built, NAME)
    assert result.status == "pass", result.line()


@pytest.mark.parametrize(
    "file, old, new",
    [
        ("rope.py", TRAILING, LEADING),  # the leading slice turned, glued back in front
        ("args.py", GROUP, 'hf_config.rope_parameters["near"]'),  # the other group's base
        ("args.py", GROUP, "hf_config.rope_parameters"),  # the flat leftover: near's, whole head
    ],
    ids=["leading_slice", "other_group", "flat_parameters"],
)
def test_seeded_defects_fail_at_the_attention(tmp_path, folder, built, capsys, file, old, new):
    models = seeded_copy(built, tmp_path / "models", NAME, old, new, file=file)
    (row,) = _verify(folder, models, capsys, "--dtype", "fp32")
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.0.attention"), row


@pytest.mark.parametrize("rule", RULES)
def test_without_the_step_the_package_fails(tmp_path, folder, planned, capsys, rule):
    models, _ = write_planned(tmp_path / "models", planned, without=rule)
    (row,) = _verify(folder, models, capsys, "--dtype", "fp32")
    assert row["status"] == "fail", row


def test_the_trailing_slice_in_halves_verifies(tmp_path, capsys):
    folder = v4_rope_folder(tmp_path / "hub", rotation="halves")
    target, plan = plan_folder(folder, rules=RULES)
    assert target.features.rope.interleaved is False
    assert "interleaved_rope" not in {step.rule for step in plan.steps}
    models, _ = write_planned(tmp_path / "models", (target, plan))
    assert "apply_rotary(turned, cos, sin)" in (models / NAME / "rope.py").read_text()
    (row,) = _verify(folder, models, capsys, "--dtype", "fp32")
    assert row["status"] == "pass", row


def test_layers_picking_several_groups_are_refused_in_one_line(tmp_path):
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    folder = v4_rope_folder(tmp_path, pick='("far", "near")[layer_idx % 2]')
    target = load_target(str(folder))
    assert target.features.rope.group == "other"
    gaps = [gap for gap in make_plan(target).gaps if gap.feature == "rope.group"]
    assert len(gaps) == 1 and "several groups" in str(gaps[0]), gaps
