"""Rope parameters grouped under labels that are not layer types (DeepSeek-V4's "main" and
"compress", which its attention picks per layer): the group every layer picks is read
from the attention (`position_embeddings[self.rope_layer_type]`, evaluated per layer) and
its factor and base are the rope's, cited at the config; a renamed sliding-only, all-MoE copy of
DeepSeek-V4 (no compressors, no hash routing) then plans with no gap, its latent query's
heads' norm read as the latent query's and not as a weightless q/k norm."""

from __future__ import annotations

import json

import pytest

from codegen.analyze.analysis import analyze

pytest.importorskip("transformers.models.deepseek_v4")


def test_partial_rotary_read_from_labelled_groups():
    features = analyze("deepseek_v4")
    assert features.rope.partial_rotary == 0.125
    evidence = features.evidence["rope.partial_rotary"]
    assert "rope_parameters.compress.partial_rotary_factor" in evidence


def test_labelled_groups_that_disagree_read_the_layers_group(tmp_path):
    config = tmp_path / "config.json"
    groups = {
        "main": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.125},
        "compress": {"rope_type": "default", "rope_theta": 1.6e5, "partial_rotary_factor": 0.25},
    }
    config.write_text(json.dumps({"model_type": "deepseek_v4", "rope_parameters": groups}))
    # every layer of the default pattern is compressed: its attention picks "compress"
    rope = analyze("deepseek_v4", str(config)).rope
    assert (rope.group, rope.partial_rotary, rope.theta) == ("compress", 0.25, 1.6e5)


def test_sliding_only_copy_plans_with_no_gap(tmp_path):
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target
    from codegen.verify.remote_fixture import remote_folder, toy_config_dict

    layers = toy_config_dict("deepseek_v4")["num_hidden_layers"]
    values = {"layer_types": ["sliding_attention"] * layers, "mlp_layer_types": ["moe"] * layers}
    folder = remote_folder("deepseek_v4", tmp_path, name="glimmerkin", config_values=values)
    target = load_target(str(folder), str(folder / "config.json"))
    assert target.features.attention.low_rank_q["b_norm"] == "q_b_norm"
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    rules = {step.rule for step in plan.steps}
    assert {"partial_rotary", "low_rank_q"} <= rules and "qk_norm_weightless" not in rules


def test_sliding_and_compressed_layers_read_a_group_each(tmp_path):
    # DeepSeek-V4's attention picks "main" on sliding layers and "compress" on the others:
    # the first layer's group, and the other's with the test restated over the config
    config = tmp_path / "config.json"
    kinds = ["sliding_attention", "heavily_compressed_attention"] * 2
    config.write_text(
        json.dumps({"model_type": "deepseek_v4", "num_hidden_layers": 4, "layer_types": kinds})
    )
    features = analyze("deepseek_v4", str(config))
    test = 'hf_config.layer_types[i] != "sliding_attention"'
    assert features.rope.group == "main" and features.rope.theta == 1e4
    assert features.rope.layer_groups == {"other": "compress", "test": test}
    evidence = features.evidence["rope.layer_groups"]
    assert evidence.startswith("'main' (modeling_deepseek_v4.py:") and test in evidence


def test_a_group_no_layer_of_the_config_picks_is_still_read(tmp_path):
    # A renamed copy whose config types no layer sliding: every layer picks "compress", yet
    # the attention's test picks "main" for sliding layers, which another config of the same
    # class types. Read as one group, the package rotated sliding layers with the wrong base.
    from codegen.scaffold.target import load_target
    from codegen.verify.remote_fixture import remote_folder, toy_config_dict

    layers = toy_config_dict("deepseek_v4")["num_hidden_layers"]
    values = {"layer_types": ["heavily_compressed_attention"] * layers}
    folder = remote_folder("deepseek_v4", tmp_path, name="glimmerkin", config_values=values)
    rope = load_target(str(folder), str(folder / "config.json")).features.rope
    test = 'hf_config.layer_types[i] == "sliding_attention"'
    assert rope.group == "compress"
    assert rope.layer_groups == {"other": "main", "test": test}
