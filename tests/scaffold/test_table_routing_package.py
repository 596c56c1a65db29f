"""End to end: a MoE decoder whose layers typed "hash_moe" route with DeepSeek-V4's hash
router (the remote-code folder of `v4_moe_fixture.hashed_folder`: the experts looked up by
token id in a fixed `tid2eid` table, weighted by their renormalised, scaled sqrtsoftplus
scores; the token ids threaded from the model through the decoder layer to the MoE), planned
from its analysis (moe.table_routing), scaffolded and verified against HF on the toy with one
expert group, with the table-routed and top-k layers mixed (fp32 and bf16), every MoE layer
typed hash_moe and none (fp32 and bf16); the table loads strictly and round-trips,
stays an integer tensor in the fp8 check, and the shard plan holds it under tp=2 and ep=2.
The toy's table maps its tokens to many experts, drawn anew per layer. Seeded defects fail
verify at the table router: indexed by position instead of token id, weights not
renormalised, scored by a sigmoid, rows off by one, the layer types read one layer off; and,
in bf16, at the top-k router of layer 3 when it projects its logits in fp32 where HF's
projects in bf16 (router_half_logits)."""

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

PICK = "        indices = self.tid2eid[tokens.reshape(-1)]\n"
DEFECTS = {
    "table-by-position": (
        PICK,
        "        indices = self.tid2eid[torch.arange(tokens.numel(), device=tokens.device)]\n",
    ),
    "rows-off-by-one": (PICK, "        indices = self.tid2eid[tokens.reshape(-1) - 1]\n"),
    "not-renormalised": (
        "        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)\n"
        "        return logits, weights * self.route_scale, indices\n"
        "\n\nclass MoE",
        "        return logits, weights * self.route_scale, indices\n\n\nclass MoE",
    ),
    "sigmoid-scores": (
        "scores = router_scores(logits, self.scoring_func)\n" + PICK,
        "scores = logits.sigmoid()\n" + PICK,
    ),
    # the layer types read one layer off: layer 2 routes by top-k, layer 3 by a table
    "layer-types-off-by-one": (
        "enumerate(hf_config.mlp_layer_types)",
        "enumerate(hf_config.mlp_layer_types[1:])",
    ),
}
# where a defect is seeded and the module verify must name, if not model.py and layer 1's
WHERE = {"layer-types-off-by-one": ("args.py", "layers.2.moe.gate")}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return hashed_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    target = load_target(str(folder))
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    (step,) = [step for step in plan.steps if step.rule == "table_routing"]
    table = step.params["table"]
    assert (table["buffer"], table["rows"], table["cols"]) == (
        "tid2eid",
        "vocab_size",
        "num_experts_per_tok",
    )
    assert (table["switch"], table["value"], table["layers"]) == (
        "mlp_layer_types",
        "hash_moe",
        [1, 2],
    )
    return target, plan


@pytest.fixture(scope="module")
def built(tmp_path_factory, planned):
    return write_planned(tmp_path_factory.mktemp("models"), planned)


def _case(folder, types: str | None = None) -> Case:
    """The folder's toy (verify's own base case), with one expert group; `types` types
    every MoE layer so."""
    from codegen.verify.cases import folder_cases

    config = copy.deepcopy(folder_cases(folder, trust_remote_code=True)[0].config)
    config.n_group = config.topk_group = 1
    if types is not None:
        config.mlp_layer_types = [types] * config.num_hidden_layers
    return Case(f"larchfield+{types or 'mixed'}", config)


def test_the_toy_table_spreads_tokens_over_experts(folder):
    from codegen.verify.hf_checkpoint import random_hf_model

    model = random_hf_model(_case(folder).config)
    tables = [layer.mlp.gate.tid2eid for layer in model.model.layers[1:3]]
    assert len(tables[0].unique()) == tables[0].max() + 1 > 8  # many experts picked
    assert not (tables[0] == tables[1]).all()  # each layer its own table


def test_package_verifies(folder, built):
    models, name = built
    source = (models / name / "model.py").read_text()
    assert "indices = self.tid2eid[tokens.reshape(-1)]" in source
    both = ("fp32", "bf16")
    for types, dtypes in ((None, both), ("hash_moe", both), ("moe", both)):
        results = verify_toy(models, name, dtypes, case=_case(folder, types))
        assert all(result.passed for result in results), (types, [r.error for r in results])


def test_the_table_loads_strictly_and_round_trips(folder, built):
    import torch

    from codegen.models import load_spec
    from codegen.verify.hf_checkpoint import random_hf_model

    models, name = built
    spec = load_spec(name, models)
    config = _case(folder).config
    hf = random_hf_model(config).state_dict()
    adapter = spec.adapter(spec.args.from_hf_config(config))
    house = adapter.from_hf(dict(hf))
    model = spec.model(spec.args.from_hf_config(config))
    model.load_state_dict(house, strict=True)
    assert torch.equal(model.layers[1].moe.gate.tid2eid, hf["model.layers.1.mlp.gate.tid2eid"])
    back = adapter.to_hf(house)
    assert set(back) == set(hf) and all(torch.equal(back[k], hf[k]) for k in hf)


def test_the_table_stays_integer_under_fp8(folder, built):
    from codegen.models import load_spec
    from codegen.verify.fp8 import verify_fp8_case

    models, name = built
    results = verify_fp8_case(load_spec(name, models), _case(folder), block=16)
    assert all(result.passed for result in results), [r.error or r.first_mismatch for r in results]


@pytest.mark.parametrize("mesh", ["tp=2", "ep=2"])
def test_shard_plan(folder, built, mesh):
    from codegen.models import load_spec
    from codegen.verify.parallel import verify_parallel

    models, name = built
    result = verify_parallel(load_spec(name, models), _case(folder).config, mesh)
    assert result.status == "pass", result.line()


@pytest.mark.parametrize("defect", list(DEFECTS), ids=list(DEFECTS))
def test_a_seeded_defect_fails_at_the_table_router(tmp_path, folder, built, defect):
    old, new = DEFECTS[defect]
    file, module = WHERE.get(defect, ("model.py", "layers.1.moe.gate"))
    models, name = tmp_path / "models", built[1]
    shutil.copytree(built[0], models)
    seed(models, name, old, new, file)
    (result,) = verify_toy(models, name, case=_case(folder), gradients=False)
    assert not result.passed
    assert result.first_divergence.startswith(module), result.first_divergence


def test_a_router_projected_in_fp32_fails_in_bf16(tmp_path, folder, built):
    """HF's top-k router projects in bf16: the Gate's logits in fp32 pick other experts."""
    pick = "        scores = router_scores(logits, self.scoring_func)\n        indices = (scores"
    half = "logits = F.linear(x.reshape(-1, x.shape[-1]), self.weight)\n" + pick
    fp32 = "logits = F.linear(x.reshape(-1, x.shape[-1]).float(), self.weight.float())\n" + pick
    models, name = tmp_path / "models", built[1]
    shutil.copytree(built[0], models)
    seed(models, name, half, fp32)
    (result,) = verify_toy(models, name, ("bf16",), case=_case(folder), gradients=False)
    assert not result.passed
    assert result.first_divergence.startswith("layers.3.moe.gate"), result.first_divergence
