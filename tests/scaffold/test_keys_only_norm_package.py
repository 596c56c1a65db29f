"""End to end: an attention that norms its keys only (DeepSeek-V4's `kv_norm`), on the
remote-code folder of `v4_attention_fixture.py` (llama whose keys are normed over each head
after their projection and handed over as the values too, whose query is up-projected from
a normed latent and normed per head by a norm of its own, whose output is rotated back and
projected per group of heads, as DeepSeek-V4's are): the
analysis reads `attention.qk_norm_on` "keys", the plan builds the keys' norm alone,
verified in fp32 and bf16 for every switch setting and under tp=2. Seeded defects fail
verify naming the first layer's attention: the keys' norm applied to the queries too, the
keys' norm dropped, the keys' norm at the block norms' epsilon. Its epsilon is a config
field of its own (`kv_norm_eps`, not the block norms' rms_norm_eps): the package reads it
(`attention.qk_norm_eps`). From qwen3 (whose q_norm and k_norm norm both), `keys_only_norm` removes
the query's norm; without it the package fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.testing import (
    plan_folder,
    seeded_copy,
    verify_folder,
    verify_shard_plan,
    write_planned,
)

sys.path.insert(0, str(Path(__file__).parent))
from v4_attention_fixture import PARTS, v4_attention_folder  # noqa: E402

pytest.importorskip("transformers.models.deepseek_v4")

KEYS = "k = self.k_norm(self.wk(x).view(batch, seq, -1, self.head_dim)).transpose(1, 2)"
ROPE = "cos, sin = rope"
EPS = "self.k_norm = RMSNorm(args.head_dim, args.qk_norm_eps)"
KV_EPS = 0.1  # the toy's rms_norm_eps is 1e-6: a key norm at that epsilon shows
DEFECTS = {
    "queries-normed-too": (ROPE, f"q = self.k_norm(q)\n        {ROPE}"),
    "keys-unnormed": (KEYS, "k = self.wk(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)"),
    "block-norms-eps": (EPS, EPS.replace("qk_norm_eps", "norm_eps")),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    parts = (*PARTS, "kv_norm", "low_rank_q")
    hub = tmp_path_factory.mktemp("hub")
    return v4_attention_folder(
        hub, name="quillkey", parts=parts, kv_eps="kv_norm_eps", kv_eps_value=KV_EPS
    )


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder)
    attention = target.features.attention
    assert (attention.qk_norm, attention.qk_norm_on) == ("per_head", "keys")
    assert attention.v_norm == "none"  # the values are the keys: their norm is the keys'
    assert "eps=config.kv_norm_eps" in target.features.evidence["attention.qk_norm_on"]
    assert attention.qk_norm_eps == {"field": "kv_norm_eps", "value": KV_EPS}
    assert "keys_only_norm" in {step.rule for step in plan.steps}
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def test_package_verifies(folder, built, capsys):
    models, name = built
    model = (models / name / "model.py").read_text()
    assert KEYS in model and "self.q_norm" not in model and "v = k  #" in model
    assert (
        EPS in model
        and "qk_norm_eps=hf_config.kv_norm_eps" in (models / name / "args.py").read_text()
    )
    summary = (models / name / "__init__.py").read_text()
    assert "key norm" in summary and "QK-norm" not in summary
    rows = verify_folder(folder, models, capsys, dtypes=("fp32", "bf16"))
    # attention_bias biases the key projection alone (the latent query's two stages are
    # unbiased, the values are the keys): the package's key projection reads it
    assert any("+attention_bias=True" in row["case"] for row in rows), rows
    assert all(row["status"] == "pass" for row in rows), rows


def test_shard_plan_under_tp2(folder, built):
    result = verify_shard_plan(folder, *built, "tp=2")
    assert result.status == "pass", result.line()


@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_seeded_defect_fails_at_the_attention(tmp_path, folder, built, capsys, defect):
    old, new = DEFECTS[defect]
    models = seeded_copy(built[0], tmp_path / "models", built[1], old, new)
    row = verify_folder(folder, models, capsys, switches=False)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.0.attention"), row["first_divergence"]


def test_from_qwen3_the_query_norm_goes(tmp_path, folder, planned, capsys):
    target, _ = planned
    plan = make_plan(target, reference="qwen3")
    assert plan.complete and "keys_only_norm" in {step.rule for step in plan.steps}
    models, name = write_planned(tmp_path / "models", (target, plan))
    assert "self.q_norm" not in (models / name / "model.py").read_text()
    row = verify_folder(folder, models, capsys, switches=False)[0]
    assert row["status"] == "pass", row
    models, _ = write_planned(tmp_path / "without", (target, plan), without="keys_only_norm")
    row = verify_folder(folder, models, capsys, switches=False)[0]
    assert row["status"] == "fail", row
    assert row["first_divergence"].startswith("layers.0.attention"), row["first_divergence"]
