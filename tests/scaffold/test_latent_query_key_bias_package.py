"""End to end: a latent query (`low_rank_q`, whose two stages have no bias) beside a key
projection biased by `attention_bias` that is also the values' (`kv_same`), with a plain
output projection the switch biases too, on the remote-code folder of
`v4_attention_fixture.py`: no switch biases the query, so the keys' and the output's biases
decide whether `attention_bias` is read, and the package builds the key projection with the
switch's bias. Verified in fp32 for every switch setting (attention_bias=True included);
the key projection built without its bias fails verify at the first layer's `wk` in the
attention_bias=True case."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_folder, write_planned

sys.path.insert(0, str(Path(__file__).parent))
from v4_attention_fixture import v4_attention_folder  # noqa: E402

pytest.importorskip("transformers.models.deepseek_v4")

KEY = "self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=args.attention_bias)"
SWITCHED = "+attention_bias=True"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    parts = ("kv_same", "low_rank_q")
    return v4_attention_folder(tmp_path_factory.mktemp("hub"), name="quillbias", parts=parts)


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    target, plan = plan_folder(folder, rules=("values_are_keys", "low_rank_q"))
    assert target.features.attention.qkv_bias is False  # the toy's switch is off
    # the reference's own `bias=args.attention_bias` realises the switch: nothing pins it
    assert "qkv_bias" not in {step.rule for step in plan.steps}
    return write_planned(tmp_path_factory.mktemp("models"), (target, plan))


def test_every_switch_setting_verifies(folder, built, capsys):
    models, name = built
    assert KEY in (models / name / "model.py").read_text()
    rows = verify_folder(folder, models, capsys)
    assert any(SWITCHED in row["case"] for row in rows), rows
    assert all(row["status"] == "pass" for row in rows), rows


def test_the_key_projection_without_its_bias_fails(tmp_path, folder, built, capsys):
    unbiased = KEY.replace("bias=args.attention_bias", "bias=False")
    models = seeded_copy(built[0], tmp_path / "models", built[1], KEY, unbiased)
    (row,) = [row for row in verify_folder(folder, models, capsys) if SWITCHED in row["case"]]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.0.attention.wk"), row["first_divergence"]
