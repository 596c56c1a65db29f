"""Attention transforms end to end: real transformers model types scaffolded from a reference
with explicit steps pass `verify`, and the same package without the key step fails it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from codegen.models import load_spec
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into, verify_generated
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.verify.cases import default_cases
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

WINDOW_ALL = Step("set_sliding_window", {"mode": "all"}, rule="sliding_window_all")
WINDOW_PATTERN = Step("set_sliding_window", {"mode": "pattern"}, rule="sliding_window_pattern")
NO_WINDOW = Step("set_sliding_window", {"mode": "none"}, rule="no_sliding_window")
QK_NORM = Step("set_qk_norm", {"kind": "per_head"}, rule="qk_norm_per_head")
NO_QK_NORM = Step("set_qk_norm", {"kind": "none"}, rule="no_qk_norm")
QKV_BIAS = Step("set_qkv_bias", {"enabled": True}, rule="qkv_bias")
# Qwen2Config has no attention_bias / mlp_bias: only the activation stays fixed
QWEN2_SETTINGS = Step("set_fixed_settings", {"settings": {"hidden_act": "silu"}})
NOPE = Step("add_nope_layers", {"rope_rule": "hf_config.no_rope_layers[i]"}, rule="nope_layers")

# target model type -> (reference, the rule whose step's absence must fail verify); the
# steps are the planner's own for that reference
CASES = {
    "mistral": ("llama", "sliding_window_all"),
    "qwen2": ("llama", "sliding_window_pattern"),
    "qwen3": ("llama", "qk_norm_per_head"),
    "llama": ("qwen3", "no_qk_norm"),
}


def _steps(model_type: str) -> list[Step]:
    reference, _ = CASES[model_type]
    plan = make_plan(load_target(model_type), reference=reference)
    assert plan.complete, plan.gaps
    return list(plan.steps)


def _scaffold(tmp_path, model_type, steps, name=None):
    reference = CASES[model_type][0]
    name = name or f"gen_{model_type}"
    features = load_target(model_type).features
    scaffold_into(tmp_path / "models", reference, name, [model_type], steps, features=features)
    return tmp_path / "models", name


def _first_case_passes(models, name) -> bool:
    spec = load_spec(name, models)
    case = default_cases(spec)[0]
    return all(r.status != "fail" for r in verify_case(spec, case, ["fp32"]))


@pytest.mark.parametrize("model_type", sorted(CASES))
def test_scaffolded_model_verifies(tmp_path, model_type):
    models, name = _scaffold(tmp_path, model_type, _steps(model_type))
    if model_type == "qwen3":  # every default case (tied and untied), fp32 and bf16
        results = verify_generated(models, name, ("fp32", "bf16"))
    else:
        spec = load_spec(name, models)
        results = verify_case(spec, default_cases(spec)[0], ["fp32"])
    assert results and all(r.status != "fail" for r in results), [
        r for r in results if r.status == "fail"
    ]


@pytest.mark.parametrize("model_type", sorted(CASES))
def test_without_the_key_step_verify_fails(tmp_path, model_type):
    key = CASES[model_type][1]
    torch.manual_seed(0)
    steps = [s for s in _steps(model_type) if s.rule != key]
    models, name = _scaffold(tmp_path, model_type, steps)
    spec = load_spec(name, models)
    assert not any(r.passed for r in verify_case(spec, default_cases(spec)[0], ["fp32"]))


def test_generated_code_is_ruff_clean(tmp_path):
    models, name = _scaffold(tmp_path, "qwen3", _steps("qwen3"))
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, str(models / name)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def _toy(model_type: str) -> Case:
    # the toy keeps the class's token ids (32000, 128004...) outside the shrunk vocab, and
    # HF asserts on pad_token_id; codegen/verify's shrink rules should reset them
    return Case(model_type, tiny_config(model_type, pad_token_id=None))


def _passes(models, name, model_type) -> bool:
    spec = load_spec(name, models)
    return all(r.status != "fail" for r in verify_case(spec, _toy(model_type), ["fp32"]))


def test_smollm3_nope_layers_and_window_pattern(tmp_path):
    models = tmp_path / "models"
    scaffold_into(models, "llama", "gen_smollm3", ["smollm3"], [WINDOW_PATTERN, NOPE])
    assert _passes(models, "gen_smollm3", "smollm3")
    scaffold_into(models, "llama", "gen_smollm3_rope", ["smollm3"], [WINDOW_PATTERN])
    assert not _passes(models, "gen_smollm3_rope", "smollm3")


def test_phi3_fused_qkv_and_window_all(tmp_path):
    models = tmp_path / "models"
    gate_up = Step("fuse_gate_up", {"layout": "concat"}, rule="fused_gate_up")
    steps = [WINDOW_ALL, Step("fuse_qkv", {"hf_name": "qkv_proj"}, rule="fused_qkv"), gate_up]
    scaffold_into(models, "llama", "gen_phi3", ["phi3"], steps)
    assert _passes(models, "gen_phi3", "phi3")
    scaffold_into(models, "llama", "gen_phi3_unfused", ["phi3"], [WINDOW_ALL, gate_up])
    assert not _passes(models, "gen_phi3_unfused", "phi3")
