"""End to end: routers projecting their logits in the model's dtype and scoring them in fp32
through a score activation. The remote-code folder of `v4_moe_fixture.hashed_folder` with
`fp32_scores`: DeepSeek-V4's top-k and hash routers, each taking sqrt(softplus) of its bf16
logits upcast (`score_fn(logits.float())`). Planned from its analysis (moe.router_fp32 False,
moe.scores_fp32 True; the table router's own `scores_fp32` True), so `router_half_logits`
runs with fp32 scores before the score activation, and the table-routed layers score as
their own router does. The package verifies in fp32 and bf16 with table-routed and top-k
layers mixed; in bf16, scores taken of the bf16 logits fail verify at the table router
(layer 1) and at the top-k router (layer 3)."""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_toy, write_planned
from codegen.verify.run import Case

sys.path.insert(0, str(Path(__file__).parent))
from v4_moe_fixture import hashed_folder  # noqa: E402

pytest.importorskip("transformers.models.deepseek_v4")

NAME = "larchmere"
# both routers score by the config's scoring_func (router_score_switch)
FP32_SCORES = "        scores = router_scores(logits.float(), self.scoring_func)\n"
HALF_SCORES = "        scores = router_scores(logits, self.scoring_func)\n"
TABLE_PICK = "        indices = self.tid2eid[tokens.reshape(-1)]\n"
TOPK_PICK = "        indices = (scores"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return hashed_folder(tmp_path_factory.mktemp("hub"), name=NAME, fp32_scores=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, folder):
    target = load_target(str(folder))
    assert (target.features.moe.router_fp32, target.features.moe.scores_fp32) == (False, True)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    steps = {step.rule: step.params for step in plan.steps}
    assert steps["router_half_logits"] == {"scores_fp32": True}
    assert steps["router_score_activation"] == {"activation": "sqrtsoftplus"}
    table = steps["table_routing"]["table"]
    assert (table["fp32"], table["scores_fp32"]) == (False, True)
    return write_planned(tmp_path_factory.mktemp("models"), (target, plan))


def _case(folder) -> Case:
    """The folder's toy (verify's own base case) with one expert group."""
    from codegen.verify.cases import folder_cases

    config = copy.deepcopy(folder_cases(folder, trust_remote_code=True)[0].config)
    config.n_group = config.topk_group = 1
    return Case(f"{NAME}+mixed", config)


def test_both_routers_score_their_half_logits_in_fp32_and_verify(folder, built):
    models, name = built
    source = (models / name / "model.py").read_text()
    assert source.count("logits = F.linear(x.reshape(-1, x.shape[-1]), self.weight)\n") == 2
    assert FP32_SCORES + TABLE_PICK in source and FP32_SCORES + TOPK_PICK in source
    results = verify_toy(models, name, ("fp32", "bf16"), case=_case(folder))
    assert all(result.passed for result in results), [r.error for r in results]


@pytest.mark.parametrize(
    ("pick", "module"),
    [(TABLE_PICK, "layers.1.moe.gate"), (TOPK_PICK, "layers.3.moe.gate")],
    ids=["table", "topk"],
)
def test_scores_of_the_half_logits_fail_in_bf16(tmp_path, folder, built, pick, module):
    models, name = tmp_path / "models", built[1]
    shutil.copytree(built[0], models)
    seed(models, name, FP32_SCORES + pick, HALF_SCORES + pick)
    (result,) = verify_toy(models, name, ("bf16",), case=_case(folder), gradients=False)
    assert not result.passed
    assert result.first_divergence.startswith(module), result.first_divergence
