"""ALiBi is named wherever the per-head slope bias reaches the attention scores.

Bloom hands the bias to its kernel as an input; MPT crops it to the query/key lengths first
(`bias[:, q0:, k0:]`) and adds it to the scores. Both are `attention.alibi` = True, cited at
the attention with the slopes' function, on renamed copies too, and the plan realises it
with the `alibi` rule after `no_rope`.
"""

from __future__ import annotations

import re

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target

CITE = re.compile(r"^modeling_\w+\.py:\d+ \(per-head slopes at modeling_\w+\.py:\d+\)$")


@pytest.mark.parametrize("model_type", ["bloom", "mpt"])
def test_alibi_is_named_with_its_evidence(model_type: str, tmp_path) -> None:
    for target in (model_type, rename_model(model_type, "zorblax", str(tmp_path))[0]):
        features = analyze(target)
        assert features.attention.alibi is True
        assert CITE.match(features.evidence["attention.alibi"]), features.evidence
        assert not [u for u in features.unsupported if u.feature == "attention.alibi"]
        assert features.rope.type == "none"
        assert "ALiBi" in features.evidence["rope.type"]


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "falcon"])
def test_no_alibi_without_the_bias(model_type: str) -> None:
    assert analyze(model_type).attention.alibi is False


def test_the_plan_realises_alibi_after_no_rope() -> None:
    rules = [step.rule for step in make_plan(load_target("mpt")).steps if step.rule]
    assert rules.index("no_rope") < rules.index("alibi")


def test_a_bias_set_to_none_after_construction_is_no_parameter() -> None:
    """mpt builds LayerNorms and then sets their `.bias = None`: no bias, no bias key."""
    features = analyze("mpt")
    assert features.norm.bias is False
    keys = [*features.state_dict.layer_keys, *features.state_dict.other_keys]
    assert "norm_1.weight" in keys and not [k for k in keys if k.endswith("norm_1.bias")]
    assert "transformer.norm_f.weight" in keys and "transformer.norm_f.bias" not in keys
