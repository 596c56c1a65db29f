"""Llama reference: parity with transformers for every RoPE scaling variant it claims."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig

from codegen.models import load_spec
from codegen.verify.cases import default_cases
from codegen.verify.run import Case, declined, verify_case
from codegen.verify.tiny_config import ORIGINAL_CONTEXT, SEQ_LEN, tiny_config

SPEC = load_spec("llama")

# rope_type -> the extra rope_parameters that activate it on a 32-token sequence
ROPE_VARIANTS = {
    "linear": {"factor": 4.0},
    "dynamic": {"factor": 4.0},
    "yarn": {"factor": 4.0, "original_max_position_embeddings": ORIGINAL_CONTEXT},
    "llama3": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": ORIGINAL_CONTEXT,
    },
}


def rope_config(rope_type: str, **extra) -> LlamaConfig:
    config = tiny_config("llama")
    config.rope_parameters = {"rope_type": rope_type, "rope_theta": 10000.0, **extra}
    if rope_type == "dynamic":
        config.max_position_embeddings = ORIGINAL_CONTEXT  # shorter than the sequence
    return config


@pytest.mark.parametrize("case", default_cases(SPEC), ids=lambda case: case.label)
def test_parity_default_cases(case):
    results = verify_case(SPEC, case, ["fp32", "bf16"])
    if declined(results):
        pytest.skip(declined(results))
    for result in results:
        assert result.passed, result
        assert not result.missing_keys and not result.unexpected_keys
        assert result.roundtrip_exact


def test_default_cases_cover_tied_and_untied_heads():
    ties = {case.config.tie_word_embeddings for case in default_cases(SPEC)}
    assert ties == {True, False}


@pytest.mark.parametrize("rope_type", sorted(ROPE_VARIANTS))
def test_parity_rope_scaling(rope_type):
    config = rope_config(rope_type, **ROPE_VARIANTS[rope_type])
    (result,) = verify_case(SPEC, Case(rope_type, config), ["fp32"])
    assert result.passed, result


def test_dynamic_rope_really_grows_past_max_positions():
    """The dynamic case must exercise the NTK branch, or the parity test above proves nothing."""
    config = rope_config("dynamic", **ROPE_VARIANTS["dynamic"])
    args = SPEC.args.from_hf_config(config)
    model = SPEC.model(args)
    positions = torch.arange(SEQ_LEN)[None]
    short = model.rotary(positions[:, :ORIGINAL_CONTEXT])[0]
    long = model.rotary(positions)[0][:, :ORIGINAL_CONTEXT]
    assert not torch.allclose(short, long)


def test_args_map_every_structural_field():
    config = LlamaConfig(
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=200,
        vocab_size=1000,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "linear", "rope_theta": 5e5, "factor": 2.0},
    )
    args = SPEC.args.from_hf_config(config)
    assert (args.dim, args.n_layers, args.n_heads, args.n_kv_heads) == (96, 3, 6, 2)
    assert (args.head_dim, args.hidden_dim, args.vocab_size) == (32, 200, 1000)
    assert args.tie_word_embeddings and args.norm_eps == 1e-5
    assert (args.rope.rope_type, args.rope.theta, args.rope.factor) == ("linear", 5e5, 2.0)


def test_settings_llama_does_not_implement_are_refused():
    """Other activations exist in LlamaConfig; the reference refuses them loudly rather
    than computing SwiGLU with them."""
    config = tiny_config("llama", hidden_act="gelu")
    with pytest.raises(NotImplementedError, match="hidden_act"):
        SPEC.args.from_hf_config(config)


def test_a_scaled_partial_rope_is_refused_in_one_line_naming_the_values():
    rope = {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4, "partial_rotary_factor": 0.5}
    with pytest.raises(NotImplementedError) as refused:
        SPEC.args.from_hf_config(tiny_config("llama", rope_parameters=rope))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("llama: partial_rotary_factor=0.5 with rope_type 'linear'")


@pytest.mark.parametrize(
    ("field", "modules"),
    [
        ("attention_bias", ("attention.wq", "attention.wk", "attention.wv", "attention.wo")),
        ("mlp_bias", ("feed_forward.w1", "feed_forward.w2", "feed_forward.w3")),
    ],
)
def test_config_biases_are_built_and_mapped(field, modules):
    """HF llama switches q/k/v/o biases with attention_bias and gate/up/down with mlp_bias;
    the reference builds exactly those (parity runs in the default cases' switch settings)."""
    labels = {case.label for case in default_cases(SPEC)}
    assert f"llama+{field}=True" in labels
    for on in (True, False):
        model = SPEC.model(SPEC.args.from_hf_config(tiny_config("llama", **{field: on})))
        biases = {name for name, _ in model.named_parameters() if name.endswith(".bias")}
        assert biases == (
            {f"layers.{i}.{m}.bias" for i in range(4) for m in modules} if on else set()
        )
