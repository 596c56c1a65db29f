"""The rule table answers for every feature value the analyzer can emit."""

from __future__ import annotations

import importlib

import pytest

from codegen.analyze import reference as references
from codegen.analyze.features import VOCAB
from codegen.scaffold.table import load_rules, rules_dir
from codegen.transforms.catalog import TRANSFORMS

# compared features whose values are projections rather than a vocabulary
PROJECTED = {
    "rope.partial_rotary": ("full", "partial"),
    "moe.shared_experts": ("yes", "no"),
    "moe.routed_scaling": ("yes", "no"),
    "moe": (True, False),
    "moe.layer_condition": ("all", "first_k", "sparse_step", "condition"),
    "moe.shared_size": ("per_expert", "own_field"),  # the experts' width x count, or its own
    "attention.key_selection": (True, False, "other"),  # an indexer read, or not understood
    # restated over the config (True), absent (False), or not restated ("other")
    "attention.v_head_dim": (True, False, "other"),
    "attention.o_low_rank": (True, False, "other"),
    "attention.low_rank_q": (True, False, "other"),
    "attention.qk_norm_eps": (True, False, "other"),  # another epsilon read, or not read
    "attention.v_scale": (True, False, "other"),
    "attention.sink_rule": (True, False, "other"),
    "attention.dynamic_mask": (True, False, "other"),  # a value bias read, or not understood
    "attention.type_block": (True, False, "other"),  # a prefix block read, or not understood
    "attention.routed": (True, False, "other"),  # a mixture of attention heads read, or not
    "ffn.activation_sparsity": (True, False, "other"),
    "attention.kv_sharing": (
        True,
        False,
        "other",
    ),  # gemma3n's sharing read, or another form  # a Gaussian top-k read, or another form
    "attention.rel_bias": (True, False, "other"),  # a relative bias table read, or not
    "attention.l2_clips": (True, False, "other"),  # L2 clips read, or another form
    "attention.sinks": (True, False, "per_token"),  # learned per head, none, per token
    "embedding.padding_idx": ("pad_token_id", "other", False),  # the field, another, none
    "state_dict.fp32_keys": (True, False, "router_bias"),  # kept: others, none, the bias alone
    "rope.group": (True, False, "other"),  # a labelled group every layer picks, flat, several
    # the number added to the sum the router renormalises by: none, 1e-20, another
    "moe.norm_topk_eps": ("none", "1e-20", "other"),
}


def emitted_values(feature: str) -> tuple:
    if feature in PROJECTED:
        return PROJECTED[feature]
    return VOCAB.get(feature, (True, False))


def unsupported_table():
    load_rules()  # mounts the rules package as codegen.rules
    return importlib.import_module("codegen.rules.unsupported").UNSUPPORTED


def by_reference(feature: str, value) -> bool:
    for row in references.REFERENCES.values():
        allowed = row.get(feature, ())
        if value in allowed or ("same_as_qkv" in allowed and isinstance(value, bool)):
            return True
    return False


def by_rule(feature: str, value) -> bool:
    return any(rule.feature == feature and value in rule.values for rule in load_rules())


@pytest.mark.parametrize("feature", sorted(references.COMPARED))
def test_every_value_is_realised_or_listed_as_unsupported(feature):
    unsupported = unsupported_table()
    for value in emitted_values(feature):
        handled = by_reference(feature, value) or by_rule(feature, value)
        listed = (feature, value) in unsupported
        assert handled or listed, f"{feature} = {value!r}: no reference, rule or reason"
        assert not (by_rule(feature, value) and listed), f"stale unsupported row: {feature}"


def test_unsupported_rows_name_real_features_and_give_reasons():
    for (feature, value), reason in unsupported_table().items():
        assert feature in references.COMPARED
        assert value in emitted_values(feature)
        assert len(reason) > 20


def test_every_rule_names_a_real_transform_feature_and_reference():
    ids = [rule.id for rule in load_rules()]
    assert len(ids) == len(set(ids)), "duplicate rule ids"
    for rule in load_rules():
        assert rule.transform in TRANSFORMS, rule.id
        # a switch-only rule (no values) realises a config switch, not a compared feature
        assert rule.feature in references.COMPARED or (rule.switch and not rule.values), rule.id
        assert set(rule.values) <= set(emitted_values(rule.feature)), rule.id
        assert set(rule.native_in) <= set(references.REFERENCES), rule.id
        assert rule.description


def test_rules_directory_is_the_table():
    assert (rules_dir() / "__init__.py").is_file()
