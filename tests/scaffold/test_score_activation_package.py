"""End to end: a MoE decoder routed by DeepSeek-V4's top-k router (the remote-code folder of
`v4_moe_fixture.routed_folder`: the clamped deepseek_v3 copy whose MoE calls DeepSeek-V4's
TopKRouter class: scores sqrt(softplus(logits)), a selection-only correction bias, the
picked scores renormalised (+1e-20) and scaled), planned from its analysis
(moe.score_activation sqrtsoftplus on a sigmoid_topk router), scaffolded and verified on the
folder's toy, and under tp=2. DeepSeek-V4's router picks the top k of all experts: the
deepseek_v3 Gate loses its expert groups (router_ungrouped_gate), so the toy's n_group=4,
which HF never reads, changes nothing, and a config without n_group / topk_group loads.
HF's router projects and scores in the model's dtype, and so does the Gate
(router_half_logits): it verifies in fp32 and bf16.
The config field the router's activation is looked up by (`ACT2FN[config.scoring_func]`)
is read (router_score_switch): the package scores by sqrtsoftplus or the sigmoid, and
`from_hf_config` refuses another setting in one line.
Seeded defects fail verify at the router: softplus without its square root, the picked
weights not renormalised as HF does (divided by the sum of all scores)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seeded_copy, verify_toy, write_planned
from codegen.verify.run import Case

sys.path.insert(0, str(Path(__file__).parent))
from v4_moe_fixture import routed_folder  # noqa: E402

pytest.importorskip("transformers.models.deepseek_v4")

DEFECTS = {
    "softplus-without-sqrt": (
        '"sqrtsoftplus": lambda x: F.softplus(x).sqrt(),',
        '"sqrtsoftplus": F.softplus,',
    ),
    "weights-over-all-scores": (
        "weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)",
        "weights = weights / (scores.sum(dim=-1, keepdim=True) + 1e-20)",
    ),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return routed_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    target, plan = plan_folder(folder)
    (step,) = [step for step in plan.steps if step.rule == "router_score_activation"]
    assert step.params["activation"] == "sqrtsoftplus"
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def _case(folder) -> Case:
    """The folder's toy (verify's own base case): its config has expert groups (n_group=4)
    DeepSeek-V4's router does not read."""
    from codegen.verify.cases import folder_cases

    case = folder_cases(folder, trust_remote_code=True)[0]
    assert case.config.scoring_func == "sqrtsoftplus" and case.config.n_group > 1
    return case


def test_package_verifies(folder, built):
    models, name = built
    model = (models / name / "model.py").read_text()
    # HF's router projects and scores in the model's dtype: bf16 logits and scores in bf16
    assert "logits = F.linear(x.reshape(-1, x.shape[-1]), self.weight)" in model
    assert "scores = router_scores(logits, self.scoring_func)" in model
    assert '"sqrtsoftplus": lambda x: F.softplus(x).sqrt(),' in model
    assert 'scoring_func: str = "sqrtsoftplus"' in (models / name / "args.py").read_text()
    results = verify_toy(models, name, ("fp32", "bf16"), case=_case(folder))
    assert all(result.passed for result in results), [r.error for r in results]


def test_the_gate_has_no_expert_groups(folder, built):
    """No group code in the Gate, no group field in ModelArgs, no read of n_group or
    topk_group: a config without them loads as one with them."""
    from codegen.models import load_spec

    models, name = built
    model, args = ((models / name / file).read_text() for file in ("model.py", "args.py"))
    assert "indices = (scores + self.e_score_correction_bias).topk(self.top_k" in model
    for gone in ("n_groups", "topk_groups", "group_scores", "masked_fill"):
        assert gone not in model, gone
    for gone in ("n_group", "topk_group", "n_expert_groups", "n_limited_groups"):
        assert gone not in args, gone
    config = copy.deepcopy(_case(folder).config)
    loaded = load_spec(name, models).args.from_hf_config(config)
    del config.n_group, config.topk_group
    assert load_spec(name, models).args.from_hf_config(config) == loaded


def test_shard_plan_under_tp2(folder, built):
    from codegen.models import load_spec
    from codegen.verify.parallel import verify_parallel

    models, name = built
    result = verify_parallel(load_spec(name, models), _case(folder).config, "tp=2")
    assert result.status == "pass", result.line()


def test_another_scoring_func_is_refused_in_one_line(folder, built):
    from codegen.models import load_spec

    models, name = built
    spec = load_spec(name, models)
    config = _case(folder).config
    assert spec.args.from_hf_config(config).n_layers == config.num_hidden_layers
    other = copy.deepcopy(config)
    other.scoring_func = "softmax"
    with pytest.raises(NotImplementedError) as refused:
        spec.args.from_hf_config(other)
    line = str(refused.value)
    assert "\n" not in line and "scoring_func='softmax'" in line and "'sqrtsoftplus'" in line


@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_seeded_defect_fails_at_the_router(tmp_path, folder, built, defect):
    old, new = DEFECTS[defect]
    models, name = tmp_path / "models", built[1]
    seeded_copy(built[0], models, name, old, new)
    (result,) = verify_toy(models, name, case=_case(folder), gradients=False)
    assert not result.passed
    assert result.first_divergence.startswith("layers.1.moe.gate"), result.first_divergence
