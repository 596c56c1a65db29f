"""End to end: DeepSeek-V3.2 and GLM-MoE-DSA (MLA whose keys a learned indexer picks per
query) from the deepseek_v3 reference through the planner; verify passes in fp32, and fails,
naming the first layer's attention, when the indexer is skipped or scores wrongly (seeded
defects in the generated model). The toy keeps 3 keys per query, fewer than the 6-token
input holds: with every key kept, these defects would pass. GLM-MoE-DSA with "shared"
layers (no indexer of their own: they reuse the keys the last indexer chose) verifies too,
and fails at the right layer's attention when a shared layer attends every causal key, or
when a later indexer's keys never replace the first one's."""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

# seeded defects: (what the generated model.py says, what the defect makes it say)
SKIPPED = ("attn_mask=keep", "is_causal=True")  # the indexer's mask never applied
NO_RELU = ("F.relu(scores * self.head_dim**-0.5)", "scores * self.head_dim**-0.5")
UNWEIGHTED = ("weights = weights * self.n_heads**-0.5", "weights = torch.ones_like(weights)")


def _scaffold(tmp_path, model_type):
    target = load_target(model_type)
    plan = make_plan(target)
    assert plan.reference == "deepseek_v3" and plan.complete
    assert "indexed_attention" in {s.rule for s in plan.steps}
    models = tmp_path / "models"
    scaffold_into(
        models,
        plan.reference,
        plan.name,
        list(plan.model_types),
        plan.steps,
        features=target.features,
        target=target,
    )
    return models, plan.name


def _verify(models, name, model_type, **overrides):
    config = tiny_config(model_type)
    assert config.index_topk < 6
    for field, value in overrides.items():
        setattr(config, field, value)
    case = Case(f"{model_type}+test", config)
    return verify_case(load_spec(name, models), case, ["fp32"])


@pytest.mark.parametrize("model_type", ["deepseek_v32", "glm_moe_dsa"])
def test_dsa_models_verify(tmp_path, model_type):
    models, name = _scaffold(tmp_path, model_type)
    results = _verify(models, name, model_type)
    assert all(r.passed for r in results), [r.error for r in results]
    # the indexer's tensors load by their checkpoint keys and shapes, and go back bit for bit
    assert all(r.roundtrip_exact and not r.missing_keys and not r.unexpected_keys for r in results)
    adapter = (models / name / "state_dict_adapter.py").read_text()
    assert adapter.count("self_attn.indexer.") == 5


@pytest.mark.parametrize(
    "defect", [SKIPPED, NO_RELU, UNWEIGHTED], ids=["skipped", "relu", "weights"]
)
def test_a_wrong_indexer_fails_at_the_attention(tmp_path, defect):
    models, name = _scaffold(tmp_path, "deepseek_v32")
    path = models / name / "model.py"
    source = path.read_text()
    assert source.count(defect[0]) == 1
    path.write_text(source.replace(*defect))
    results = _verify(models, name, "deepseek_v32")
    assert not any(r.passed for r in results)
    assert all(r.first_divergence.startswith("layers.0.attention ") for r in results)


# layer 1 reuses layer 0's keys, layer 3 layer 2's
SHARED = ["full", "shared", "full", "shared"]
# seeded defects, with the layer they show first: a shared layer keeps every causal key;
# the first indexer's keys kept for all layers (layer 2's own choice never replaces them)
ALL_KEYS = (
    'keep = selection["keep"]  # the keys each query attends to',
    'keep = selection["keep"] if self.indexer is not None else'
    ' torch.ones_like(selection["keep"]).tril()',
    "layers.1.attention",
)
FIRST_ONLY = (
    'selection["keep"] = self.indexer(x, q_latent, rope)',
    'selection.setdefault("keep", self.indexer(x, q_latent, rope))',
    "layers.2.attention",
)


@pytest.fixture(scope="module")
def glm(tmp_path_factory):
    return _scaffold(tmp_path_factory.mktemp("glm"), "glm_moe_dsa")


def test_shared_layers_reuse_the_last_indexers_keys(glm):
    models, name = glm
    results = _verify(models, name, "glm_moe_dsa", indexer_types=SHARED)
    assert all(r.passed for r in results), [r.error for r in results]


@pytest.mark.parametrize("defect", [ALL_KEYS, FIRST_ONLY], ids=["all-keys", "first-only"])
def test_a_wrong_shared_choice_fails_at_that_layer(tmp_path, glm, defect):
    import shutil

    models, name = glm
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    path = copy / name / "model.py"
    source = path.read_text()
    assert source.count(defect[0]) == 1
    path.write_text(source.replace(*defect[:2]))
    results = _verify(copy, name, "glm_moe_dsa", indexer_types=SHARED)
    assert not any(r.passed for r in results)
    assert all(r.first_divergence.startswith(defect[2]) for r in results), [
        r.first_divergence for r in results
    ]
