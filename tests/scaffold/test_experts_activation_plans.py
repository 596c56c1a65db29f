"""The plan makes a MoE package follow the config's activation only where every part HF
builds looks it up by that field: the routed experts (ffn.experts_activation) and the shared
expert, if any (ffn.shared_activation). A part that hard-codes its activation keeps the pin."""

from __future__ import annotations

import dataclasses

import pytest

from codegen.scaffold.plan import _activation_steps as _steps
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def _with_ffn(features, **changes):
    return dataclasses.replace(features, ffn=dataclasses.replace(features.ffn, **changes))


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe", "deepseek_v3", "olmoe"])
def test_experts_looking_it_up_by_the_field_follow(model_type):
    (step,) = [
        s for s in make_plan(load_target(model_type)).steps if s.transform == "activation_by_name"
    ]
    assert step.params == {"activation": "silu", "field": "hidden_act", "experts": True}


@pytest.mark.parametrize(
    ("model_type", "part"),
    [("mixtral", "experts_activation"), ("deepseek_v3", "shared_activation")],
)
def test_a_part_that_hard_codes_it_keeps_the_pin(model_type, part):
    features = load_target(model_type).features
    assert _steps(features)
    assert _steps(_with_ffn(features, **{part: None})) == []


def test_experts_reading_another_field_keep_the_pin():
    features = load_target("mixtral").features
    other = {"activation": "silu", "field": "expert_act"}
    assert _steps(_with_ffn(features, experts_activation=other)) == []


def test_gpt_oss_clamped_experts_plan_no_step():
    assert _steps(load_target("gpt_oss").features) == []
