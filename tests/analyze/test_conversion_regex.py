"""Regex renamings of transformers' conversion mapping reversed (module key -> on-disk key),
as transformers reverses them to save: one capture group, escaped dots, `^`, lookarounds
dropped; a layer index of the key template (`{}`) counts as the group's digits."""

from __future__ import annotations

import pytest

from codegen.analyze.conversion import _reversed_regex


@pytest.mark.parametrize(
    ("source", "target", "key", "on_disk"),
    [
        (
            r"\.attn\.(q_l2_clip|k_l2_clip|rel_l2_clip)\.",
            r".self_attn.\1.",
            "model.layers.{}.self_attn.q_l2_clip.scale",
            "model.layers.{}.attn.q_l2_clip.scale",
        ),
        (
            r"attn_res\.mlp_queries\.(\d+)",
            r"layers.\1.mlp_input.query",
            "model.layers.{}.mlp_input.query",
            "model.attn_res.mlp_queries.{}",
        ),
        (
            r"(convolution|sconv)\.weight(?!_)",
            r"\1.conv1d.weight",
            "model.layers.{}.self_attn.k_sconv.conv1d.weight",
            "model.layers.{}.self_attn.k_sconv.weight",
        ),
        (
            r"(q|k|v)_input_norm",
            r"\1_input_layernorm",
            "model.layers.{}.q_input_layernorm.weight",
            "model.layers.{}.q_input_norm.weight",
        ),
        # a key the target does not name stays
        (
            r"(q|k|v)_input_norm",
            r"\1_input_layernorm",
            "model.layers.{}.input_layernorm.weight",
            "model.layers.{}.input_layernorm.weight",
        ),
    ],
)
def test_a_capture_group_renaming_is_undone(source, target, key, on_disk):
    assert _reversed_regex(source, target)(key) == on_disk


@pytest.mark.parametrize("source", [r"[qk]_norm", r"(a|b)\.(c|d)", r"x+\.y"])
def test_other_constructs_are_not_guessed(source):
    assert _reversed_regex(source, r"\1.z") is None
