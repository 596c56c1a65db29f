"""An attention holding experts of its own (JetMoE's mixture of attention heads) is one
unsupported line naming the routed module; a key selector's top-k indexer is not experts."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


def _routed(features):
    return [u for u in features.unsupported if u.feature == "attention.routed"]


def test_mixture_of_attention_heads() -> None:
    (gap,) = _routed(analyze("jetmoe"))
    assert "self_attention.experts" in gap.detail
    assert gap.evidence.startswith("modeling_jetmoe.py:")


def test_a_renamed_copy_is_flagged_too(tmp_path) -> None:
    copy_path, _ = rename_model("jetmoe", "zorblax", str(tmp_path))
    (gap,) = _routed(analyze(copy_path))
    assert "self_attention.experts" in gap.detail


@pytest.mark.parametrize("model_type", ["deepseek_v32", "qwen3_moe", "llama"])
def test_dense_attention_is_no_finding(model_type: str) -> None:
    assert not _routed(analyze(model_type))


def test_the_plan_names_the_routed_attention_first() -> None:
    """The finding explains the unknowns after it (the routed o-projection's bias is unread)."""
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    plan = make_plan(load_target("jetmoe"))
    assert not plan.complete
    assert plan.gaps[0].feature == "attention.routed"
    assert "attention.o_bias" in {gap.feature for gap in plan.gaps[1:]}
