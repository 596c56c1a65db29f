"""End to end: a router that divides its picked weights by their sum plus 1e-6 (LFM2-MoE's,
on a renamed remote-code copy), planned from its analysis (`moe.norm_topk_eps`, rule
`router_renorm_eps`): the package's renormalisation adds the same constant, where the
reference it starts from divides by the bare sum.

At the toy's size the constant is invisible (sigmoid scores near 0.5, so 1e-6 moves the
logits by about 3e-7 of their scale, inside fp32's noise). The toy here makes it count: one
expert, one pick, and weights initialised at std 0.5 (the config's initializer_range), so
the router's logits spread over tens and many tokens' one score is far below 1e-6; HF gives
such a token the weight s / (s + 1e-6), well short of 1, a bare sum gives exactly 1. The
package verifies in fp32 and bf16; the same package dividing by the bare sum (a seeded
defect, or the plan without the rule) fails, the first divergence in a layer's MoE."""

from __future__ import annotations

import pytest

from codegen.scaffold.testing import plan_folder, seed, verify_toy, write_planned

pytest.importorskip("transformers.models.lfm2_moe")

NAME = "quillon"
# one expert picked by every token, its weight renormalised over itself: s / (s + 1e-6);
# overrides of the folder's toy (the toy builder sizes the experts itself)
SMALL_SCORES = {"initializer_range": 0.5, "num_experts": 1, "num_experts_per_tok": 1}
WITH_EPS = "weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-06)"
BARE = "weights = weights / weights.sum(dim=-1, keepdim=True)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from codegen.verify.remote_fixture import remote_folder

    hub = tmp_path_factory.mktemp("hub")
    return remote_folder("lfm2_moe", hub, name=NAME)


@pytest.fixture(scope="module")
def case(folder):
    """The folder's toy (built by its own code) with SMALL_SCORES."""
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.run import Case

    config = remote_toy_config(load_remote(folder, True), **SMALL_SCORES)
    return Case(f"{NAME}+small_scores", config)


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, {"router_renorm_eps"})


def test_the_analysis_reads_the_constant(planned):
    target, plan = planned
    assert target.features.moe.norm_topk_eps == 1e-6
    (step,) = [step for step in plan.steps if step.rule == "router_renorm_eps"]
    assert step.params == {"eps": 1e-6}


def test_package_carries_the_constant_and_verifies(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    model = (models / name / "model.py").read_text()
    assert WITH_EPS in model and BARE not in model
    results = verify_toy(models, name, ("fp32", "bf16"), case=case, gradients=False)
    assert all(result.status == "pass" for result in results), [r.to_json() for r in results]


def _fails_at_the_moe(models, name, case):
    (result,) = verify_toy(models, name, case=case, gradients=False)
    row = result.to_json()
    assert row["status"] == "fail", row
    divergence = row.get("first_divergence") or ""
    assert divergence.startswith("layers.") and ".moe" in divergence, row


def test_seeded_bare_sum_fails_at_the_moe(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, WITH_EPS, BARE)
    _fails_at_the_moe(models, name, case)


def test_package_without_the_rule_fails(tmp_path, planned, case):
    models, name = write_planned(tmp_path / "models", planned, without="router_renorm_eps")
    assert BARE in (models / name / "model.py").read_text()
    _fails_at_the_moe(models, name, case)
