"""An attention holding experts of its own (JetMoE's mixture of attention heads) is the fact
`attention.routed`: the paths of its router, query and output experts, shared key/value
linear and output bias; a key selector's top-k indexer is not experts. The MoE beside it
runs its gated product over stacked projection modules (`moe.projections`), and its layer
norms keep their class's epsilon while the final norm reads the config's (`norm.layer_eps`)."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

ROUTED = {
    "router": "experts.router.layer",
    "query": "experts.input_linear",
    "output": "experts.output_linear",
    "kv": "kv_proj",
    "bias": "experts.bias",
}


def _unsupported(features):
    return [u for u in features.unsupported if u.feature == "attention.routed"]


def test_mixture_of_attention_heads() -> None:
    features = analyze("jetmoe")
    assert features.attention.routed == ROUTED
    assert features.attention.o_bias is True  # the routed module's bias, after the merge
    assert features.evidence["attention.routed"].startswith("modeling_jetmoe.py:")
    assert not _unsupported(features)


def test_the_moe_and_norm_facts() -> None:
    features = analyze("jetmoe")
    assert features.moe.projections == {
        "router": "router.layer",
        "gate_up": "input_linear",
        "down": "output_linear",
        "bias": "bias",
    }
    assert (features.ffn.kind, features.ffn.gate_up_layout) == ("swiglu", "concat")
    assert features.ffn.bias is False  # the MoE's output bias is `moe.projections`'
    assert features.norm.layer_eps == 1e-6


def test_a_renamed_copy_reads_the_same(tmp_path) -> None:
    copy_path, _ = rename_model("jetmoe", "zorblax", str(tmp_path))
    features = analyze(copy_path)
    assert features.attention.routed == ROUTED
    assert features.moe.projections is not None


@pytest.mark.parametrize("model_type", ["deepseek_v32", "qwen3_moe", "llama", "granitemoe"])
def test_dense_attention_is_no_finding(model_type: str) -> None:
    features = analyze(model_type)
    assert features.attention.routed is None and not _unsupported(features)
    assert features.norm.layer_eps is None


def test_the_plan_realises_the_routed_attention() -> None:
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    plan = make_plan(load_target("jetmoe"))
    assert plan.complete, plan.gaps
    rules = [step.rule for step in plan.steps]
    for rule in ("routed_attention", "moe_projections", "layer_norm_eps"):
        assert rule in rules


def test_an_attention_routing_otherwise_than_the_moe_stays_unsupported(tmp_path) -> None:
    """A package's two routers read one experts count and top-k: an attention scoring
    another number of experts than the MoE is "other", one unsupported line."""
    copy_path, _ = rename_model("jetmoe", "zorblax", str(tmp_path))
    with open(copy_path) as f:
        source = f.read()
    moa = source.index("class ZorblaxMoA")
    count = "self.num_experts = config.num_local_experts"
    at = source.index(count, moa)
    source = source[:at] + "self.num_experts = 4" + source[at + len(count) :]
    with open(copy_path, "w") as f:
        f.write(source)
    features = analyze(copy_path)
    assert features.attention.routed == "other"
    (gap,) = _unsupported(features)
    assert "another form than JetMoE's" in gap.detail
    assert "self_attention.experts" in gap.evidence
