"""Seeded defects in how the installed DeepSeek-V4's package reads its token -> experts
table, which HF's all-zero initial table hid: on it every token picks expert 0 k times, so
a gate that reads the table at the wrong row computes the same model. verify's checkpoint
now fills the table with distinct experts per token (`codegen/verify/index_tables.py`), and
each defect fails verify at the first table-routed MoE (layer 0). Each is shown passing on
the zero table (the checkpoint's table fill turned off), where it was undetected."""

from __future__ import annotations

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seeded_copy, verify_toy, write_planned
from codegen.verify import hf_checkpoint

pytest.importorskip("transformers.models.deepseek_v4")

PICK = "        indices = self.tid2eid[tokens.reshape(-1)]\n"
DEFECTS = {
    # every token reads the table's first row
    "token-ids-ignored": "        indices = self.tid2eid[torch.zeros_like(tokens.reshape(-1))]\n",
    # each token reads the next token id's row
    "rows-off-by-one": (
        "        indices = self.tid2eid[(tokens.reshape(-1) + 1) % self.tid2eid.shape[0]]\n"
    ),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    target = load_target("deepseek_v4")
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    return write_planned(tmp_path_factory.mktemp("models"), (target, plan))


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_a_wrong_table_row_fails_at_the_first_table_routed_moe(tmp_path, built, defect):
    models, name = built
    assert PICK in (models / name / "model.py").read_text()
    seeded = seeded_copy(models, tmp_path / "models", name, PICK, DEFECTS[defect])
    (result,) = verify_toy(seeded, name, gradients=False)
    row = result.to_json()
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.0.moe"), row


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_the_zero_table_hid_it(tmp_path, monkeypatch, built, defect):
    models, name = built
    seeded = seeded_copy(models, tmp_path / "models", name, PICK, DEFECTS[defect])
    monkeypatch.setattr(hf_checkpoint, "fill_index_tables", lambda model, generator: {})
    (result,) = verify_toy(seeded, name, gradients=False)
    assert result.to_json()["status"] == "pass", result.to_json()
