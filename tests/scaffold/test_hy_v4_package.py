"""End to end: HY-V4 (MLA with sinks and an output gate, a DSA indexer whose rope dims trail
its heads and whose "shared" layers reuse the last indexer's keys, hyper-connections that
add the streams back unmixed, routed experts clamped beside a dense MLP) from the
deepseek_v3 reference through the planner; verify passes. The toy keeps 3 keys per query
(fewer than the 6-token input holds) and runs "full", "full", "shared", "shared" layers, so
the choice matters; seeded defects fail verify at the module that holds them: the indexer
rotating its leading dims (a wrong selection), a shared layer keeping every causal key,
and DeepSeek-V4's twice-a-sigmoid output weights (under a magnitude other than 2)."""

from __future__ import annotations

import copy
import shutil

import pytest

from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_toy, write_planned
from codegen.verify.run import Case
from codegen.verify.tiny_config import tiny_config

pytest.importorskip("transformers.models.hy_v4")

# (what the generated model.py says, the defect, the module verify names first, config)
DEFECTS = {
    "leading-rope": (
        "q_nope, q_pe = q.split(split, dim=-1)",
        "q_pe, q_nope = q.split(split[::-1], dim=-1)",
        "layers.0.attention",
        {},
    ),
    "shared-all-keys": (
        'keep = selection["keep"]  # the keys each query attends to',
        'keep = selection["keep"] if self.indexer is not None else'
        ' torch.ones_like(selection["keep"]).tril()',
        "layers.2.attention",
        {},
    ),
    "twice-sigmoid": (
        "post = self.post_magnitude * torch.sigmoid(",
        "post = 2 * torch.sigmoid(",
        "layers.0",
        {"hc_magnitude": 1.5},
    ),
}


@pytest.fixture(scope="module")
def planned():
    target = load_target("hy_v4")
    plan = make_plan(target)
    assert plan.reference == "deepseek_v3" and plan.complete, plan.gaps
    rules = {step.rule for step in plan.steps}
    assert {"indexed_attention", "hyper_connections", "experts_clamped"} <= rules
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def _case(**overrides) -> Case:
    config = tiny_config("hy_v4")
    assert config.index_topk < 6 and "shared" in config.indexer_types
    config = copy.deepcopy(config)
    for field, value in overrides.items():
        setattr(config, field, value)
    return Case("hy_v4+test", config)


def test_package_verifies(built):
    models, name = built
    (result,) = verify_toy(models, name, case=_case(hc_magnitude=1.5))
    assert result.passed, result.error


@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_seeded_defect_fails_at_its_module(tmp_path, built, defect):
    old, new, where, overrides = DEFECTS[defect]
    models, name = tmp_path / "models", built[1]
    shutil.copytree(built[0], models)
    seed(models, name, old, new)
    (result,) = verify_toy(models, name, case=_case(**overrides), gradients=False)
    assert not result.passed
    assert result.first_divergence.startswith(where), result.first_divergence
