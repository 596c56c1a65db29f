"""End to end: a MoE decoder routed by DeepSeek-V4's top-k router (the remote-code folder of
`v4_moe_fixture.routed_folder`: the clamped deepseek_v3 copy whose MoE calls DeepSeek-V4's
TopKRouter class: scores sqrt(softplus(logits)), a selection-only correction bias, the
picked scores renormalised (+1e-20) and scaled), planned from its analysis
(moe.score_activation sqrtsoftplus on a sigmoid_topk router), scaffolded and verified on the
toy with one expert group (DeepSeek-V4's router picks from all experts; the deepseek_v3 Gate
the plan keeps reads the config's n_group, which the toy sets to 4), and under tp=2.
The config field the router's activation is looked up by (`ACT2FN[config.scoring_func]`)
is pinned: `from_hf_config` accepts sqrtsoftplus and refuses another setting in one line.
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
        "scores = F.softplus(logits).sqrt()",
        "scores = F.softplus(logits)",
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
    """The folder's toy (verify's own base case), with one expert group."""
    from codegen.verify.cases import folder_cases

    config = copy.deepcopy(folder_cases(folder, trust_remote_code=True)[0].config)
    assert config.scoring_func == "sqrtsoftplus" and config.n_group > 1
    config.n_group = config.topk_group = 1
    return Case("larchwood+one-group", config)


def test_package_verifies(folder, built):
    models, name = built
    assert "scores = F.softplus(logits).sqrt()" in (models / name / "model.py").read_text()
    results = verify_toy(models, name, ("fp32", "bf16"), case=_case(folder))
    assert all(result.passed for result in results), [r.error for r in results]


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
