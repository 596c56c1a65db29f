"""Values a config does not hold but the code fixes, and attention a learned scorer narrows.

* `norm.eps`: the epsilon a norm adds when it is the code's own constant (OLMo's
  non-parametric LayerNorm: 1e-5); None where a config field holds it (llama's rms_norm_eps).
* `norm.weight`: whether the norms hold a learned scale (OLMo's LayerNorm has none).
* `norm.eps_field`: the config field the norms' constructor passes as epsilon
  (cohere2_moe's layer_norm_eps, beside the rms_norm_eps its config leaves None).
* `attention.key_selection`: DeepSeek-V3.2-style attention keeps the top-k keys a learned
  indexer scores; no reference does, so it is an unsupported finding (the plan stops), on a
  renamed copy too, and plain MLA is not flagged.
"""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


def test_a_constant_epsilon_is_read_from_the_code():
    features = analyze("olmo")
    assert features.norm.eps == 1e-05
    assert features.evidence["norm.eps"].startswith("modeling_olmo.py:")


def test_an_epsilon_the_config_holds_is_left_to_the_config():
    assert analyze("llama").norm.eps is None


def test_the_epsilon_field_is_the_one_the_norm_is_built_with():
    features = analyze("cohere2_moe")
    assert features.norm.eps_field == "layer_norm_eps"
    assert features.evidence["norm.eps_field"].startswith("modeling_cohere2_moe.py:")
    assert analyze("llama").norm.eps_field == "rms_norm_eps"
    assert analyze("olmo").norm.eps_field is None  # a constant of the code, no field


def test_a_norm_without_tensors_has_no_weight():
    features = analyze("olmo")
    assert features.norm.weight is False
    assert features.evidence["norm.weight"].startswith("modeling_olmo.py:")
    assert analyze("llama").norm.weight is True


def _key_selection(features):
    return [u for u in features.unsupported if u.feature == "attention.key_selection"]


@pytest.mark.parametrize("model_type", ["deepseek_v32", "glm_moe_dsa"])
def test_keys_chosen_by_a_learned_indexer_are_named(model_type):
    found = _key_selection(analyze(model_type))
    assert [u.detail for u in found] == [
        "keys selected by a learned scorer (indexer) before the softmax"
    ]


def test_plain_mla_selects_no_keys():
    assert _key_selection(analyze("deepseek_v3")) == []


def test_a_renamed_copy_is_named_too(tmp_path):
    copy, _ = rename_model("deepseek_v32", "zorblax", str(tmp_path))
    assert len(_key_selection(analyze(copy))) == 1
