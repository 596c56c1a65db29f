"""End to end: RoPE / embedding / head / scale transforms on real transformers model types.

Each model is scaffolded from the llama reference with explicit steps into tmp_path and
verified against the installed transformers model; a seeded check drops one of this
group's steps and asserts that verify then fails, so every test has teeth.

The toy configs of the verify protocol keep granite's multipliers at their class defaults
(1.0), which would hide every granite step; the granite case sets the published
granite-3.0 values. glm's and cohere's default pad_token_id lies outside the toy vocab, so
their case clears it.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from codegen.analyze.analysis import analyze
from codegen.models import load_spec
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into
from codegen.transforms.catalog import TRANSFORMS
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

GRANITE = [
    Step("embedding_scale", rule="embedding_scale"),
    Step("attention_scale", rule="attention_scale"),
    Step("residual_scale", rule="residual_scale"),
    Step("logit_scale", rule="logit_scale"),
]
GRANITE_MULTIPLIERS = {
    "embedding_multiplier": 12.0,
    "attention_multiplier": 0.015625,
    "residual_multiplier": 0.22,
    "logits_scaling": 8.0,
}

GLM = [
    Step("set_qkv_bias", {"enabled": True}, rule="qkv_bias"),
    Step("set_o_bias", {"enabled": False}, rule="o_bias"),  # llama's switch biases o too
    Step(
        "set_fixed_settings",
        {"settings": {"attention_bias": True, "hidden_act": "silu"}},
        rule="fixed_settings",
    ),
    Step("fuse_gate_up", {"layout": "concat"}, rule="fused_gate_up"),
    Step("partial_rotary", rule="partial_rotary"),
    Step("interleaved_rope", rule="interleaved_rope"),
]

STABLELM = [
    Step("map_config_fields", {"fields": {"rms_norm_eps": "hf_config.layer_norm_eps"}}),
    Step("set_norm_kind", {"kind": "layernorm", "bias": True}, rule="norm_layernorm"),
    Step("partial_rotary", rule="partial_rotary"),
    Step(
        "set_fixed_settings",
        {
            "settings": {
                "use_qkv_bias": False,
                "qk_layernorm": False,
                "use_parallel_residual": False,
                "hidden_act": "silu",
            }
        },
        rule="fixed_settings",
    ),
]

COHERE = [
    Step("map_config_fields", {"fields": {"rms_norm_eps": "hf_config.layer_norm_eps"}}),
    Step("set_norm_kind", {"kind": "layernorm", "bias": False}, rule="norm_layernorm"),
    Step("set_norm_placement", {"placement": "parallel"}, rule="norm_placement"),
    Step("interleaved_rope", rule="interleaved_rope"),
    Step("logit_scale", rule="logit_scale"),
]

GEMMA2 = [
    Step("set_norm_kind", {"kind": "rmsnorm_offset"}, rule="norm_offset"),
    Step("set_norm_placement", {"placement": "sandwich"}, rule="norm_placement"),
    Step("set_ffn_kind", {"kind": "geglu", "activation": "gelu_pytorch_tanh"}, rule="ffn_geglu"),
    Step(
        "set_fixed_settings",
        {"settings": {"attention_bias": False, "hidden_activation": "gelu_pytorch_tanh"}},
        rule="fixed_settings",
    ),
    Step("set_sliding_window", {"mode": "pattern"}, rule="sliding_window_pattern"),
    Step("add_attention_softcap", rule="attention_softcap"),
    Step("attention_scale", rule="attention_scale"),
    Step("embedding_scale", rule="embedding_scale"),
    Step("logit_softcap", rule="logit_softcap"),
]


def _require(steps):
    missing = sorted({s.transform for s in steps} - set(TRANSFORMS))
    if missing:
        pytest.skip(f"transforms not written yet: {missing}")


def _build(tmp_path, model_type, steps, *, without=None, name=None):
    _require(steps)
    name = name or model_type
    kept = [step for step in steps if step.transform != without]
    assert len(kept) == len(steps) - (without is not None)
    models = tmp_path / "models"
    scaffold_into(models, "llama", name, [model_type], kept, features=analyze(model_type))
    return models, load_spec(name, models)


def _verify(spec, model_type, dtypes=("fp32",), **overrides):
    case = Case(f"{model_type}+test", tiny_config(model_type, **overrides))
    return verify_case(spec, case, list(dtypes))


def _report(results) -> str:
    return "; ".join(
        f"{r.case}/{r.dtype}: passed={r.passed} cos={r.cosine} diff={r.max_abs_diff} "
        f"err={r.error} at={r.first_divergence}"
        for r in results
    )


# ---- granite: embedding multiplier, attention multiplier, residual multiplier, logit scale ---


def test_granite_from_llama_verifies_with_real_multipliers_and_is_ruff_clean(tmp_path):
    models, spec = _build(tmp_path, "granite", GRANITE)
    results = _verify(spec, "granite", ("fp32", "bf16"), **GRANITE_MULTIPLIERS)
    assert all(r.status != "fail" for r in results), _report(results)
    package = models / "granite"
    model = (package / "model.py").read_text()
    assert "h = self.tok_embeddings(tokens) * self.args.embedding_multiplier" in model
    assert "return self.output(h / self.args.logits_scaling)" in model
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    for command in ([ruff, "check", str(package)], [ruff, "format", "--check", str(package)]):
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("without", [step.transform for step in GRANITE])
def test_granite_without_a_multiplier_step_fails_verify(tmp_path, without):
    _, spec = _build(tmp_path, "granite", GRANITE, without=without)
    (result,) = _verify(spec, "granite", **GRANITE_MULTIPLIERS)
    assert not result.passed, _report([result])


# ---- glm: partial rotary (half the head) in interleaved pairs ------------------------------


def test_glm_from_llama_verifies_fp32_and_bf16(tmp_path):
    _, spec = _build(tmp_path, "glm", GLM)
    results = _verify(spec, "glm", ("fp32", "bf16"), pad_token_id=None)
    assert all(r.status != "fail" for r in results), _report(results)


@pytest.mark.parametrize("without", ["partial_rotary", "interleaved_rope"])
def test_glm_without_a_rope_step_fails_verify(tmp_path, without):
    _, spec = _build(tmp_path, "glm", GLM, without=without)
    (result,) = _verify(spec, "glm", pad_token_id=None)
    assert not result.passed, _report([result])
    assert result.first_divergence.startswith("layers.0.attention")


# ---- stablelm, cohere, gemma2: the other groups' transforms plus this group's ------------


def test_stablelm_quarter_rotary_verifies(tmp_path):
    _, spec = _build(tmp_path, "stablelm", STABLELM)
    results = _verify(spec, "stablelm")
    assert all(r.status != "fail" for r in results), _report(results)


def test_cohere_interleaved_rope_and_logit_scale_verify(tmp_path):
    _, spec = _build(tmp_path, "cohere", COHERE)
    results = _verify(spec, "cohere", pad_token_id=None)
    assert all(r.status != "fail" for r in results), _report(results)


def test_gemma2_scales_and_softcap_verify_and_the_softcap_has_teeth(tmp_path):
    _, spec = _build(tmp_path / "with", "gemma2", GEMMA2)
    results = _verify(spec, "gemma2")
    assert all(r.status != "fail" for r in results), _report(results)
    _, spec = _build(tmp_path / "without", "gemma2", GEMMA2, without="logit_softcap")
    (result,) = _verify(spec, "gemma2")
    assert not result.passed, _report([result])
