"""End to end: a table-routed gate scored by relu2. The hash-routed folder of
`v4_moe_fixture.hashed_folder` (DeepSeek-V4's hash router: the experts looked up by token id
in `tid2eid`, their scores `ACT2FN[config.scoring_func]` renormalised over the sum plus
1e-20) is scaffolded with the relu family accepted at its table gate too, and verifies under
relu2 in fp32 with gradients, on mixed layers whose tables give each token distinct experts.

Why the table gate was refused before: on the installed DeepSeek-V4 toy verify's checkpoint
kept HF's all-zero table (it perturbed floating tensors only; it now fills such a table with
distinct experts per token, `codegen/verify/index_tables.py`), so every token picked expert 0
k times, its weights are 1/k whatever it scores and the gate's gradient is exactly zero
(float64: 1e-17 on both sides); in fp32 both sides return the rounding of that cancellation,
grown by 1 / (sum of scores), which relu2's near-zero scores make large (HF 3.9e-7, the
package 2.3e-7, over a floor of 1.7e-8). With distinct experts per token the same package
matches HF's table-gate gradient to 9e-7.

Seeded defect: the table gate's renormalisation without the constant divides 0 / 0 for a
token whose picks all score zero; verify fails and names the first table-routed MoE."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seeded_copy, verify_toy, write_planned
from codegen.verify.run import Case

sys.path.insert(0, str(Path(__file__).parent))
from v4_moe_fixture import hashed_folder  # noqa: E402

pytest.importorskip("transformers.models.deepseek_v4")

TABLE_RENORMALISE = (
    "        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)\n"
    "        return logits, weights * self.route_scale, indices\n"
)
TABLE_GATE_END = TABLE_RENORMALISE + "\n\nclass MoE"  # the TableGate's, not the Gate's


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return hashed_folder(tmp_path_factory.mktemp("hub"), name="larchgrove")


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    target = load_target(str(folder))
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    return write_planned(tmp_path_factory.mktemp("models"), (target, plan))


def _relu2_case(folder) -> Case:
    from codegen.verify.cases import folder_cases

    config = copy.deepcopy(folder_cases(folder, trust_remote_code=True)[0].config)
    config.n_group = config.topk_group = 1
    config.scoring_func = "relu2"
    return Case("larchgrove+relu2", config)


def test_the_table_gate_accepts_relu2_and_verifies(folder, built):
    models, name = built
    source = (models / name / "model.py").read_text()
    assert '"relu2": lambda x: F.relu(x).square(),' in source
    assert TABLE_RENORMALISE in source
    (result,) = verify_toy(models, name, case=_relu2_case(folder))
    row = result.to_json()
    assert row["status"] == "pass" and row["gradients_match"], row


def test_without_the_constant_the_table_gate_fails(tmp_path, folder, built):
    models, name = built
    bare = TABLE_GATE_END.replace(" + 1e-20)", ")")
    seeded = seeded_copy(models, tmp_path / "models", name, TABLE_GATE_END, bare)
    (result,) = verify_toy(seeded, name, case=_relu2_case(folder), gradients=False)
    row = result.to_json()
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith("layers.1.moe"), row
