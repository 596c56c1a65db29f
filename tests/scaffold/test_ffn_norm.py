"""FFN and norm transforms end to end: real transformers model types scaffolded from a
reference with explicit steps pass `verify`, and the same package without the key step (or
with a seeded defect) fails it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codegen.models import load_spec
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into, verify_generated
from codegen.verify.cases import default_cases
from codegen.verify.run import verify_case

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

# this group's steps
LAYERNORM = Step("set_norm_kind", {"kind": "layernorm"}, rule="norm_layernorm")
NORM_BIAS = Step("set_norm_bias", {"enabled": True}, rule="norm_bias")
NO_NORM_WEIGHT = Step("drop_norm_weight", rule="norm_no_weight")
OFFSET_NORM = Step("set_norm_kind", {"kind": "rmsnorm_offset"}, rule="norm_offset")
POST_NORM = Step("set_norm_placement", {"placement": "post"}, rule="norm_placement")
SANDWICH = Step("set_norm_placement", {"placement": "sandwich"}, rule="norm_placement")
PARALLEL = Step("set_norm_placement", {"placement": "parallel"}, rule="norm_placement")
GEGLU = Step("set_ffn_kind", {"kind": "geglu", "activation": "gelu_pytorch_tanh"}, rule="ffn_geglu")
FFN_BIAS = Step("set_ffn_bias", {"enabled": True}, rule="ffn_bias")
GELU_MLP = Step(
    "set_ffn_kind", {"kind": "gelu_mlp", "activation": "gelu_pytorch_tanh"}, rule="ffn_gelu_mlp"
)
RELU2 = Step(
    "set_ffn_kind", {"kind": "relu2", "activation": "relu2", "bias": False}, rule="ffn_relu2"
)
GATE_UP = Step("fuse_gate_up", {"layout": "concat"}, rule="fused_gate_up")
GATE_UP_INTERLEAVED = Step("fuse_gate_up", {"layout": "interleaved"}, rule="fused_gate_up")

# other groups' steps and the name/config plumbing
PARTIAL_ROTARY = Step("partial_rotary", rule="partial_rotary")
INTERLEAVED_ROPE = Step("interleaved_rope", rule="interleaved_rope")
QKV_BIAS = Step("set_qkv_bias", {"enabled": True}, rule="qkv_bias")
# llama's attention_bias biases o too; these targets bias q/k/v only
NO_O_BIAS = Step("set_o_bias", {"enabled": False}, rule="o_bias")
O_BIAS = Step("set_o_bias", {"enabled": True}, rule="o_bias")
WINDOW_ALL = Step("set_sliding_window", {"mode": "all"}, rule="sliding_window_all")
QK_NORM_FULL = Step("set_qk_norm", {"kind": "full"}, rule="qk_norm_full")
EMBEDDING_SCALE = Step("embedding_scale", {"kind": "sqrt_dim"}, rule="embedding_scale")
LOGIT_SCALE = Step("logit_scale", {"field": "logit_scale", "op": "*"}, rule="logit_scale")
CLIP_QKV = Step("clip_qkv", rule="clip_qkv")


def _eps(field):
    return Step("map_config_fields", {"fields": {"rms_norm_eps": f"hf_config.{field}"}})


STARCODER2_KEYS = Step(
    "rename_hf_keys", {"mapping": {"mlp.up_proj": "mlp.c_fc", "mlp.down_proj": "mlp.c_proj"}}
)
STARCODER2_SETTINGS = Step(
    "set_fixed_settings", {"settings": {"use_bias": True, "hidden_act": "gelu_pytorch_tanh"}}
)
GLM4_SETTINGS = Step("set_fixed_settings", {"settings": {"attention_bias": True}})

# target model type -> (reference, steps, the key steps: without any one of them verify fails)
CASES = {
    "stablelm": (
        "llama",
        [PARTIAL_ROTARY, LAYERNORM, NORM_BIAS, _eps("layer_norm_eps")],
        [NORM_BIAS],
    ),
    "arcee": ("llama", [RELU2], [RELU2]),
    "starcoder2": (
        "llama",
        [QKV_BIAS, O_BIAS, WINDOW_ALL, FFN_BIAS, GELU_MLP, LAYERNORM, NORM_BIAS]
        + [STARCODER2_KEYS, _eps("norm_epsilon"), STARCODER2_SETTINGS],
        [GELU_MLP],
    ),
    "olmo2": ("llama", [QK_NORM_FULL, POST_NORM], [POST_NORM]),
    # non-parametric LayerNorms: the checkpoint holds no norm tensor; the epsilon is the
    # code's constant (the planner reads it from norm.eps)
    "olmo": (
        "llama",
        [
            CLIP_QKV,
            LAYERNORM,
            NO_NORM_WEIGHT,
            Step("map_config_fields", {"fields": {"rms_norm_eps": "1e-5"}}),
        ],
        [NO_NORM_WEIGHT],
    ),
    "gemma": ("llama", [GEGLU, OFFSET_NORM, EMBEDDING_SCALE], [OFFSET_NORM]),
    "cohere": (
        "llama",
        [INTERLEAVED_ROPE, LAYERNORM, PARALLEL, LOGIT_SCALE, _eps("layer_norm_eps")],
        [PARALLEL, LAYERNORM],  # LayerNorm vs RMSNorm: same keys, only the numbers differ
    ),
}
# glm4's sandwich names its norms unlike gemma2: the scheme comes from the analyzed features
GLM4_STEPS = [
    QKV_BIAS,
    NO_O_BIAS,
    PARTIAL_ROTARY,
    INTERLEAVED_ROPE,
    GATE_UP,
    SANDWICH,
    GLM4_SETTINGS,
]


def _scaffold(tmp_path, model_type, steps, reference="llama", features=None):
    name = f"gen_{model_type}"
    models = tmp_path / "models"
    scaffold_into(models, reference, name, [model_type], steps, features=features)
    return models, name


def _first_case(models, name, dtypes=("fp32",)):
    spec = load_spec(name, models)
    return verify_case(spec, default_cases(spec)[0], list(dtypes))


def _glm4_features():
    from codegen.analyze.analysis import analyze

    return analyze("glm4")


def _ruff_clean(directory: Path) -> None:
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--config", str(PYPROJECT), str(directory)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("model_type", sorted(CASES))
def test_scaffolded_model_verifies(tmp_path, model_type):
    reference, steps, _ = CASES[model_type]
    models, name = _scaffold(tmp_path, model_type, steps, reference)
    if model_type == "gemma":
        # both dtypes: bf16 is where the offset norm's cast order shows. A hand-picked step
        # list has no guard_switches step, so the config class defaults only
        results = verify_generated(models, name, ("fp32", "bf16"), switches=False)
    else:
        results = _first_case(models, name)
    assert results and all(r.status != "fail" for r in results), [
        r for r in results if r.status == "fail"
    ]
    _ruff_clean(models / name)


KEY_STEPS = [(model_type, key) for model_type in sorted(CASES) for key in CASES[model_type][2]]


@pytest.mark.parametrize(
    ("model_type", "key"), KEY_STEPS, ids=[f"{m}-{k.rule}" for m, k in KEY_STEPS]
)
def test_without_the_key_step_verify_fails(tmp_path, model_type, key):
    reference, steps, _ = CASES[model_type]
    torch.manual_seed(0)
    models, name = _scaffold(tmp_path, model_type, [s for s in steps if s is not key], reference)
    assert not all(r.passed for r in _first_case(models, name))


def test_glm4_sandwich_and_fused_gate_up_verify(tmp_path):
    models, name = _scaffold(tmp_path, "glm4", GLM4_STEPS, features=_glm4_features())
    # hand-picked steps (no guard_switches): the config class defaults only
    results = verify_generated(models, name, ("fp32", "bf16"), switches=False)
    assert results and all(r.status != "fail" for r in results), [
        r for r in results if r.status == "fail"
    ]
    adapter = (models / name / "state_dict_adapter.py").read_text()
    assert '"model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight"' in (
        adapter
    )
    _ruff_clean(models / name)


@pytest.mark.parametrize("defect", ["no_fused_gate_up", "interleaved_instead_of_concat"])
def test_glm4_seeded_defects_fail(tmp_path, defect):
    """The key step, and the classic gate/up layout confusion (same keys, same shapes)."""
    steps = list(GLM4_STEPS)
    if defect == "no_fused_gate_up":
        steps.remove(GATE_UP)
    else:
        steps[steps.index(GATE_UP)] = GATE_UP_INTERLEAVED
    torch.manual_seed(0)
    models, name = _scaffold(tmp_path, "glm4", steps, features=_glm4_features())
    results = _first_case(models, name)
    assert not all(r.passed for r in results)
    if defect == "interleaved_instead_of_concat":
        assert results[0].error is None and results[0].cosine < 0.999


def test_gemma_activation_is_checked_twice(tmp_path):
    """Without the GeGLU step the package refuses gemma's config (FIXED_SETTINGS); with that
    guard loosened by hand, verify still sees the wrong activation in the numbers."""
    steps = [s for s in CASES["gemma"][1] if s is not GEGLU]
    models, name = _scaffold(tmp_path, "gemma", steps)
    refused = _first_case(models, name)[0]
    assert not refused.passed and "hidden_act" in refused.error
    loosened = Step("set_fixed_settings", {"settings": {"hidden_act": "gelu_pytorch_tanh"}})
    models, name = _scaffold(tmp_path / "loosened", "gemma", [*steps, loosened])
    wrong = _first_case(models, name)[0]
    assert wrong.error is None and not wrong.passed
