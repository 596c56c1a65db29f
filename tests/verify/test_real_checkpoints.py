"""Feature settings of real published checkpoints: scaffold the architecture, then verify.

Each row is the `model_type` and the feature fields of a published `config.json` (sizes
left out). The toy shrinks sizes as for `codegen verify --shrink-config` (windows, caps and
contexts shorter than a test sequence, so they act), but the flags and choices (a bool, a
string, None) are put back as published: the toy switches optional features on, a real
checkpoint often has them off. The package is planned from the architecture's analysis
alone, like a new user's first `codegen scaffold`, and must pass the full parity protocol
(logits, gradients, adapter round trip) in fp32 on each.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from codegen.cli import main
from codegen.models import load_spec
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import hf_config_class, shrink

_LLAMA3_ROPE = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0}
_DEEPSEEK_YARN = {
    "type": "yarn",
    "factor": 40,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 0.707,
    "mscale_all_dim": 0.707,
    "original_max_position_embeddings": 4096,
}

# checkpoint -> (model_type, its feature fields as published)
CHECKPOINTS: dict[str, tuple[str, dict]] = {
    "meta-llama/Llama-3.1-8B": (
        "llama",
        {
            "rope_theta": 500000.0,
            "rope_scaling": {
                **_LLAMA3_ROPE,
                "factor": 8.0,
                "original_max_position_embeddings": 8192,
            },
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": False,
        },
    ),
    "meta-llama/Llama-3.2-1B": (
        "llama",
        {
            "rope_theta": 500000.0,
            "rope_scaling": {
                **_LLAMA3_ROPE,
                "factor": 32.0,
                "original_max_position_embeddings": 8192,
            },
            "tie_word_embeddings": True,
            "head_dim": 64,
        },
    ),
    "mistralai/Mistral-7B-v0.1": ("mistral", {"sliding_window": 4096, "rope_theta": 10000.0}),
    "mistralai/Mistral-7B-Instruct-v0.3": (
        "mistral",
        {"sliding_window": None, "rope_theta": 1000000.0},
    ),
    "mistralai/Mixtral-8x7B-v0.1": (
        "mixtral",
        {
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "sliding_window": None,
            "rope_theta": 1000000.0,
        },
    ),
    "Qwen/Qwen2.5-7B": (
        "qwen2",
        {
            "use_sliding_window": False,
            "sliding_window": 131072,
            "max_window_layers": 28,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
        },
    ),
    "Qwen/Qwen2.5-0.5B": (
        "qwen2",
        {"use_sliding_window": False, "max_window_layers": 24, "tie_word_embeddings": True},
    ),
    "Qwen/Qwen3-0.6B": (
        "qwen3",
        {
            "attention_bias": False,
            "head_dim": 128,
            "use_sliding_window": False,
            "max_window_layers": 28,
            "tie_word_embeddings": True,
            "rope_theta": 1000000,
        },
    ),
    "Qwen/Qwen3-30B-A3B": (
        "qwen3_moe",
        {
            "norm_topk_prob": True,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "num_experts_per_tok": 8,
            "use_sliding_window": False,
            "tie_word_embeddings": False,
        },
    ),
    "Qwen/Qwen1.5-MoE-A2.7B": (
        "qwen2_moe",
        {
            "norm_topk_prob": False,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "num_experts_per_tok": 4,
            "use_sliding_window": False,
        },
    ),
    "microsoft/Phi-3-mini-4k-instruct": (
        "phi3",
        {"sliding_window": 2047, "rope_scaling": None, "tie_word_embeddings": False},
    ),
    "google/gemma-2-9b": (
        "gemma2",
        {
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
            "query_pre_attn_scalar": 256,
            "sliding_window": 4096,
            "hidden_activation": "gelu_pytorch_tanh",
        },
    ),
    "google/gemma-1.1-2b-it": (
        "gemma",
        {
            "num_key_value_heads": 1,
            "head_dim": 256,
            "hidden_activation": "gelu_pytorch_tanh",
            "tie_word_embeddings": True,
        },
    ),
    "allenai/OLMoE-1B-7B-0924": (
        "olmoe",
        {
            "clip_qkv": None,
            "norm_topk_prob": False,
            "num_experts_per_tok": 8,
            "attention_bias": False,
            "tie_word_embeddings": False,
        },
    ),
    "allenai/OLMo-2-1124-7B": (
        "olmo2",
        {"attention_bias": False, "rms_norm_eps": 1e-06, "rope_theta": 500000},
    ),
    "ibm-granite/granite-3.0-2b-instruct": (
        "granite",
        {
            "embedding_multiplier": 12.0,
            "residual_multiplier": 0.22,
            "attention_multiplier": 0.015625,
            "logits_scaling": 8.0,
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": True,
        },
    ),
    "stabilityai/stablelm-2-1_6b": (
        "stablelm",
        {
            "partial_rotary_factor": 0.25,
            "use_qkv_bias": True,
            "qk_layernorm": False,
            "use_parallel_residual": False,
        },
    ),
    "stabilityai/stablelm-2-12b": (
        "stablelm",
        {
            "partial_rotary_factor": 0.25,
            "use_qkv_bias": False,
            "qk_layernorm": True,
            "use_parallel_residual": True,
        },
    ),
    "CohereForAI/c4ai-command-r-v01": (
        "cohere",
        {"use_qk_norm": False, "logit_scale": 0.0625, "tie_word_embeddings": True},
    ),
    "CohereForAI/c4ai-command-r-plus": (
        "cohere",
        {"use_qk_norm": True, "logit_scale": 0.8333333333333334, "tie_word_embeddings": True},
    ),
    "bigcode/starcoder2-3b": ("starcoder2", {"sliding_window": 4096, "use_bias": True}),
    "deepseek-ai/DeepSeek-V2-Lite": (
        "deepseek_v2",
        {
            "q_lora_rank": None,
            "topk_method": "greedy",
            "n_group": 1,
            "topk_group": 1,
            "norm_topk_prob": False,
            "routed_scaling_factor": 1.0,
            "first_k_dense_replace": 1,
            "n_shared_experts": 2,
            "num_experts_per_tok": 6,
            "rope_scaling": _DEEPSEEK_YARN,
        },
    ),
    "deepseek-ai/DeepSeek-V3": (
        "deepseek_v3",
        {
            "q_lora_rank": 1536,
            "n_group": 8,
            "topk_group": 4,
            "norm_topk_prob": True,
            "routed_scaling_factor": 2.5,
            "first_k_dense_replace": 3,
            "n_shared_experts": 1,
            "num_experts_per_tok": 8,
            "rope_scaling": _DEEPSEEK_YARN,
        },
    ),
}

# checkpoint -> the one-line refusal its package gives: a feature no rule realises yet
REFUSED: dict[str, str] = {
    # per-head LayerNorm on q and k (weights [heads, head_dim])
    "CohereForAI/c4ai-command-r-plus": "CohereConfig.use_qk_norm=True is not supported",
    # per-head LayerNorm on q and k (its parallel residual is realised)
    "stabilityai/stablelm-2-12b": "StableLmConfig.qk_layernorm=True is not supported",
}


def _flags(fields: dict) -> dict:
    """The published fields that choose a code path rather than size something."""
    return {
        field: value
        for field, value in fields.items()
        if isinstance(value, bool | str | list) or (value is None and field != "rope_scaling")
    }


def _toy(model_type: str, fields: dict):
    config_class = hf_config_class(model_type)
    values = config_class(**fields).to_dict()
    names = dict(getattr(config_class, "attribute_map", {}) or {})
    toy = shrink(values, keep_pattern=True, attribute_map=names)
    return config_class(**{**toy, **_flags(fields)})


@cache
def _package(model_type: str, models: str):
    assert main(["scaffold", model_type, "--out", models]) == 0
    return load_spec(model_type, Path(models))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return str(tmp_path_factory.mktemp("real_checkpoints") / "models")


def test_the_table_spans_the_architectures_the_issue_asks_for():
    assert len(CHECKPOINTS) >= 15
    assert len({model_type for model_type, _ in CHECKPOINTS.values()}) >= 10


@pytest.mark.parametrize("checkpoint", sorted(CHECKPOINTS))
def test_real_feature_settings_pass_verify(checkpoint, models, capsys):
    model_type, fields = CHECKPOINTS[checkpoint]
    spec = _package(model_type, models)
    capsys.readouterr()
    config = _toy(model_type, fields)
    for field, value in _flags(fields).items():
        assert getattr(config, field) == value, field
    (result,) = verify_case(spec, Case(checkpoint, config, may_refuse=True), ["fp32"])
    if checkpoint in REFUSED:
        assert result.refused and result.refused.startswith(REFUSED[checkpoint]), result
        return
    assert result.passed and not result.refused and not result.skipped, result
    assert not result.missing_keys and not result.unexpected_keys
    assert result.roundtrip_exact
