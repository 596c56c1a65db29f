"""Where HF computes in fp32 inside a bf16 model: what a package must copy to round alike.

flint keeps three: its eager attention takes q and k to fp32 before q @ k^T, its RMSNorm
multiplies the weight into the fp32 values and casts last, and `_keep_in_fp32_modules_strict`
loads the router weight and the attention sinks in fp32. Each is read from the source, on
a renamed copy too; Llama-style models have none of them.
"""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

FLINT_FP32_KEYS = ("model.layers.{}.self_attn.sinks", "model.layers.{}.mlp.gate.weight")


def _dtypes(features):
    return (
        features.attention.scores_fp32,
        features.norm.weight_fp32,
        features.state_dict.fp32_keys,
    )


def test_flint_computes_scores_norms_and_router_weights_in_fp32() -> None:
    assert _dtypes(analyze("flint")) == (True, True, FLINT_FP32_KEYS)


def test_a_renamed_flint_reads_the_same(tmp_path) -> None:
    copy, _ = rename_model("flint", "zorblax", str(tmp_path))
    assert _dtypes(analyze(copy)) == (True, True, FLINT_FP32_KEYS)


def test_llama_style_models_round_as_llama() -> None:
    assert _dtypes(analyze("qwen3")) == (False, False, ())


def test_a_kept_buffer_is_listed_too() -> None:
    """deepseek_v3 and GLM-4-MoE keep their router's correction bias (a buffer) in fp32:
    it is listed like a parameter (a llama-derived package must keep it; a reference router
    that keeps it itself is left alone by the transform)."""
    for model_type in ("deepseek_v3", "glm4_moe"):
        keys = analyze(model_type).state_dict.fp32_keys
        assert keys == ("model.layers.{}.mlp.gate.e_score_correction_bias",)


def test_olmo2_norms_cast_last_but_attend_in_the_model_dtype() -> None:
    assert _dtypes(analyze("olmo2"))[:2] == (False, True)
