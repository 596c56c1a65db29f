"""Values a config does not hold but the code fixes, and attention a learned scorer narrows.

* `norm.eps`: the epsilon a norm adds when it is the code's own constant (OLMo's
  non-parametric LayerNorm: 1e-5); None where a config field holds it (llama's rms_norm_eps).
* `norm.weight`: whether the norms hold a learned scale (OLMo's LayerNorm has none).
* `norm.eps_field`: the config field the norms' constructor passes as epsilon
  (cohere2_moe's layer_norm_eps, beside the rms_norm_eps its config leaves None).
* `attention.key_selection`: DeepSeek-V3.2-style attention keeps the top-k keys a learned
  indexer scores: the indexer's parts are named (told apart by their sizes), on a renamed
  copy too, with the dims it rotates (leading or trailing) and its key norm's epsilon (a
  number or a config field); a scorer of another shape is unsupported, and plain MLA selects
  no keys.
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
    return features.attention.key_selection


INDEXER = {
    "module": "indexer",
    "q_proj": "wq_b",
    "k_proj": "wk",
    "k_norm": "k_norm",
    "weights_proj": "weights_proj",
    "rope_dims": "leading",
    "k_norm_eps": 1e-06,
    "k_norm_in_weight_dtype": False,
    "scale_on_weights": False,
}


@pytest.mark.parametrize(
    ("model_type", "interleaved"), [("deepseek_v32", False), ("glm_moe_dsa", True)]
)
def test_keys_chosen_by_a_learned_indexer_are_named(model_type, interleaved):
    features = analyze(model_type)
    assert _key_selection(features) == {**INDEXER, "interleaved": interleaved}
    assert features.evidence["attention.key_selection"].startswith(f"modeling_{model_type}.py:")
    assert not [u for u in features.unsupported if u.feature == "attention.key_selection"]


def test_trailing_rotated_dims_and_a_config_epsilon_are_read():
    """hy_v4's indexer turns its heads' trailing dims and reads its key norm's epsilon from
    the config."""
    pytest.importorskip("transformers.models.hy_v4")
    features = analyze("hy_v4")
    expected = {
        **INDEXER,
        "rope_dims": "trailing",
        "k_norm_eps": "rms_norm_eps",
        "k_norm_in_weight_dtype": True,  # its key norm runs in the norm's (fp32) dtype
        "scale_on_weights": True,  # q.k's scale on the per-head weights, not the scores
    }
    assert _key_selection(features) == {**expected, "interleaved": False}


def test_a_learned_module_on_q_and_k_selects_no_keys():
    """zaya's q/k normalisation (a learned key scale) reaches the kernel through the keys,
    not a mask: no key selection; it is read as the L2 q/k norm it is, no module left
    unnamed."""
    features = analyze("zaya")
    assert _key_selection(features) is None
    found = {u.feature: u.detail for u in features.unsupported}
    assert "attention.key_selection" not in found
    assert "attention.qkv_modules" not in found
    assert features.attention.l2_qk_norm["module"] == "qk_norm"


def test_plain_mla_selects_no_keys():
    assert _key_selection(analyze("deepseek_v3")) is None


def test_a_renamed_copy_is_named_too(tmp_path):
    copy, _ = rename_model("deepseek_v32", "zorblax", str(tmp_path))
    assert _key_selection(analyze(copy)) == {**INDEXER, "interleaved": False}
