"""End to end: LongCat-Flash's layer of two latent-attention sublayers, each with its own dense
MLP and pre-norms, beside a shortcut MoE of routed and identity (zero-computation) experts
whose softmax router picks with a correction bias: planned from its analysis (deepseek_v3 +
shortcut_sublayers, identity_experts...), scaffolded and verified against the installed
transformers model. Seeded defects, each a slip of the new steps, fail verify and name the
module."""

from __future__ import annotations

import dataclasses

import pytest

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, seeded_copy, verify_toy, write_planned
from codegen.verify.cases import default_cases

TARGET = "longcat_flash"
RULES = {
    "shortcut_sublayers",
    "identity_experts",
    "router_softmax_gate",
    "moe_no_shared_experts",
    "latent_scale",
}


@pytest.fixture(scope="module")
def planned():
    target = load_target(TARGET)
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert plan.reference == "deepseek_v3"
    assert RULES <= {step.rule for step in plan.steps}
    return target, plan


def _package(models, planned, without: str | None = None, **params):
    """The planned package; `without` drops a step, `params` override the sublayer step's."""
    steps = []
    for step in planned[1].steps:
        if params and step.rule == "shortcut_sublayers":
            sublayers = {**step.params["sublayers"], **params}
            step = dataclasses.replace(step, params={**step.params, "sublayers": sublayers})
        steps.append(step)
    return write_planned(models, planned, without, steps)


def test_package_verifies_with_two_sublayers_and_identity_experts(tmp_path, planned):
    models, name = _package(tmp_path / "models", planned)
    results = verify_toy(models, name, ("fp32", "bf16"))
    assert all(r.passed for r in results), [r.error or r.first_divergence for r in results]
    model = (models / name / "model.py").read_text()
    assert "self.attention = nn.ModuleList(Attention(args) for _ in range(2))" in model
    assert "shortcut = self.moe(normed)" in model
    assert "longcat" not in model.lower().replace("longcat_flash", "")


def test_the_moe_fed_from_the_second_sublayer_fails_naming_the_moe(tmp_path, planned):
    models, name = _package(tmp_path / "models", planned, moe_input=1)
    (result,) = verify_toy(models, name)
    assert not result.passed
    # every module computes what HF's does from its input: the MoE's input is another
    assert result.first_divergence.startswith(
        "layers.0.moe (HF model.layers.0.mlp) reads another input than HF's"
    ), result.first_divergence


def test_the_second_sublayer_dropped_fails_in_the_first_layer(tmp_path, planned):
    models, name = _package(tmp_path / "models", planned)
    seed(models, name, "        h = h + self.attention[1](self.attention_norm[1](h), rope)\n", "")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.first_divergence.startswith(
        "layers.0.attention_norm.1, layers.0.attention.1 (HF model.layers.0.input_layernorm.1,"
        " model.layers.0.self_attn.1): never run"
    ), result.first_divergence


def test_identity_experts_run_as_real_experts_fail_naming_the_moe(tmp_path, planned):
    """A pick of an identity expert sent to a routed expert's weights (the last one), and no
    token passed on: the MoE diverges in the first layer."""
    models, name = _package(tmp_path / "models", planned)
    seed(
        models,
        name,
        "identity = indices >= self.num_experts",
        "identity = indices < 0\n        indices = indices.clamp(max=self.num_experts - 1)",
    )
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.moe.experts "), result.first_divergence


def test_without_the_identity_experts_the_router_keys_do_not_fit(tmp_path, planned):
    """The router built for the routed experts only: the checkpoint's router (scoring the
    identity experts too) does not load, and verify says which tensor."""
    models, name = _package(tmp_path / "models", planned, without="identity_experts")
    (result,) = verify_toy(models, name)
    assert not result.passed
    assert "moe.gate" in (result.error or ""), result.error


def test_tensor_parallel_passes_and_counts_identity_picks_once(tmp_path, planned):
    """The plan indexes the sublayer lists (every attention/MLP/norm entry applies) and
    shards the experts' hidden dim, gate/up's identity rows included; the tokens identity
    experts pass on are added by one rank. Kept on every rank, they are summed twice."""
    from codegen.verify.parallel import verify_parallel

    models, name = _package(tmp_path / "models", planned)
    spec = load_spec(name, models)
    config = default_cases(spec, switches=False)[0].config
    result = verify_parallel(spec, config, "tp=2")
    assert result.passed, result.error
    seeded, _ = _package(tmp_path / "seeded", planned)  # a package not imported yet
    seed(seeded, name, "routed is None or mesh.get_local_rank() == 0", "True", "parallel.py")
    spec = load_spec(name, seeded)
    result = verify_parallel(spec, config, "tp=2")
    assert not result.passed
    assert "logits differ" in result.error, result.error


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    """(models folder, name) of the planned package, built once for the ep checks."""
    return _package(tmp_path_factory.mktemp("built") / "models", planned)


def test_expert_parallel_passes_with_identity_experts(built):
    """Under ep, gate/up's unread identity rows split with the routed experts, each rank's
    share after its own experts (their rows reordered as they load and put back when
    gathered); a token's identity picks pass it on, weighted, on the rank holding it."""
    from codegen.verify.parallel import verify_parallel

    spec = load_spec(built[1], built[0])
    result = verify_parallel(spec, default_cases(spec, switches=False)[0].config, "ep=2")
    assert result.passed, result.error


EP_DEFECTS = {
    # the unread rows split plainly: rank 1's first local rows are not its experts'
    "rows_in_their_own_order": ("        module.ep_rows = rows\n", "        rows = None\n"),
    # the identity picks passed on beside the dispatch as well as through it: counted twice
    "identity_counted_twice": (
        "    return pairs.view(tokens, top_k, -1).sum(dim=1)\n",
        "    passed = (weights * (indices >= local * size)).sum(1, keepdim=True) * x\n"
        "    return pairs.view(tokens, top_k, -1).sum(dim=1) + passed\n",
    ),
    # tp's rule (rank 0 alone passes identity picks on) under ep, where each rank holds
    # tokens of its own: rank 1's tokens lose theirs
    "identity_on_rank_0_only": (
        "                return _dispatch_combine(",
        "                weights = _weight_free_slots_once(module, indices, weights, mesh)\n"
        "                return _dispatch_combine(",
    ),
    # the combine drops the routing weights: each pair's output comes back unweighted
    "weights_dropped": (
        "forward(rows, got_experts[:, None], got_weights[:, None])",
        "forward(rows, got_experts[:, None], torch.ones_like(got_weights)[:, None])",
    ),
}


@pytest.mark.parametrize("defect", list(EP_DEFECTS))
def test_expert_parallel_seeded_defects_fail(tmp_path, built, defect):
    from codegen.verify.parallel import verify_parallel

    models = seeded_copy(
        built[0], tmp_path / "models", built[1], *EP_DEFECTS[defect], "parallel.py"
    )
    spec = load_spec(built[1], models)
    result = verify_parallel(spec, default_cases(spec, switches=False)[0].config, "ep=2")
    assert not result.passed
    assert result.error.startswith("logits differ"), result.error
    # each rank's modules against the one device's on its rows: the experts part from it
    assert "the forward first differs at layers.0.moe.experts (" in result.error, result.error
