"""The oracle has teeth: real onboarding bugs seeded into the llama reference must fail
verification, and the divergence report must point at the module that carries the bug.

(Defects specific to other references live beside them: dropped QK-norm in qwen3,
reordered experts in qwen3_moe, router bias / partial rotary / grouped top-k in deepseek_v3.)
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from codegen.layers import rope as rope_module
from codegen.models import load_spec
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import ORIGINAL_CONTEXT, tiny_config

LLAMA = load_spec("llama")


def run(spec, config, dtype="fp32"):
    (result,) = verify_case(spec, Case("seeded", config), [dtype])
    return result


def with_adapter_rows(**rows):
    class Adapter(LLAMA.adapter):
        from_hf_map = {**LLAMA.adapter.from_hf_map, **rows}

    return dataclasses.replace(LLAMA, adapter=Adapter)


def test_healthy_reference_passes():
    """Control: the same harness passes the untouched reference."""
    assert run(LLAMA, tiny_config("llama")).passed


def test_swapped_gate_and_up_fails_in_the_feed_forward():
    spec = with_adapter_rows(
        **{
            "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w3.weight",
            "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w1.weight",
        }
    )
    result = run(spec, tiny_config("llama"))
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.feed_forward")


def test_dropped_weight_is_reported_missing():
    spec = with_adapter_rows(**{"model.layers.{}.post_attention_layernorm.weight": None})
    result = run(spec, tiny_config("llama"))
    assert not result.passed
    assert "layers.0.ffn_norm.weight" in result.missing_keys


def test_unmapped_checkpoint_key_is_reported_unexpected():
    class Adapter(LLAMA.adapter):
        from_hf_map = {
            k: v for k, v in LLAMA.adapter.from_hf_map.items() if "input_layernorm" not in k
        }

    result = run(dataclasses.replace(LLAMA, adapter=Adapter), tiny_config("llama"))
    assert not result.passed
    assert "model.layers.0.input_layernorm.weight" in result.unexpected_keys
    assert result.roundtrip_exact is False


def test_tied_head_left_untied_fails():
    """The checkpoint of a tied model has no lm_head; a package that neither ties the head
    nor fills it from the embedding runs with a random head."""

    class UntiedModel(LLAMA.model):
        def __init__(self, args):
            super().__init__(args)
            self.output = nn.Linear(args.dim, args.vocab_size, bias=False)

    class NoTyingAdapter(LLAMA.adapter):
        tied = False

    spec = dataclasses.replace(LLAMA, model=UntiedModel, adapter=NoTyingAdapter)
    result = run(spec, tiny_config("llama", tie_word_embeddings=True))
    assert not result.passed
    assert result.missing_keys == ["output.weight"]


def test_wrong_rope_theta_fails_in_attention():
    class WrongTheta(LLAMA.args):
        @classmethod
        def from_hf_config(cls, hf_config):
            args = super().from_hf_config(hf_config)
            args.rope = dataclasses.replace(args.rope, theta=args.rope.theta * 10)
            return args

    result = run(dataclasses.replace(LLAMA, args=WrongTheta), tiny_config("llama"))
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention")


def test_ignored_yarn_attention_factor_fails(monkeypatch):
    config = tiny_config("llama")
    config.rope_parameters = {
        "rope_type": "yarn",
        "rope_theta": 10000.0,
        "factor": 4.0,
        "original_max_position_embeddings": ORIGINAL_CONTEXT,
    }
    assert run(LLAMA, config).passed  # control: yarn is supported

    yarn = rope_module.FREQUENCY_RULES["yarn"]
    monkeypatch.setitem(rope_module.FREQUENCY_RULES, "yarn", lambda *a: (yarn(*a)[0], 1.0))
    result = run(LLAMA, config)
    assert not result.passed
    assert result.first_divergence.startswith("layers.0.attention")


def test_ignored_qkv_bias_fails_in_attention():
    """qwen2 has q/k/v biases; a port that builds the projections without them and drops
    the checkpoint's bias tensors loads cleanly but computes the wrong attention."""
    qwen2 = load_spec("qwen2")

    class NoBiasModel(qwen2.model):
        def __init__(self, args):
            super().__init__(args)
            for layer in self.layers:
                for name in ("wq", "wk", "wv"):
                    old = getattr(layer.attention, name)
                    setattr(
                        layer.attention,
                        name,
                        nn.Linear(old.in_features, old.out_features, bias=False),
                    )

    class NoBiasAdapter(qwen2.adapter):
        from_hf_map = {
            key: (None if key.endswith("_proj.bias") else value)
            for key, value in qwen2.adapter.from_hf_map.items()
        }

    spec = dataclasses.replace(qwen2, model=NoBiasModel, adapter=NoBiasAdapter)
    result = run(spec, tiny_config("qwen2"))
    assert not result.passed
    assert not result.missing_keys and not result.unexpected_keys  # only logits can tell
    assert result.first_divergence.startswith("layers.0.attention")


def test_word_table_without_padding_row_fails_in_the_embedding():
    """HF builds the word table with `padding_idx=pad_token_id` (its padding row learns
    nothing); a port that drops it computes the same logits, so only the gradient of the
    padding row can tell: verify's long input holds the toy's pad token, and the gradient
    check names the embedding."""

    class NoPaddingRow(LLAMA.model):
        def __init__(self, args):
            super().__init__(args)
            self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
            if args.tie_word_embeddings:
                self.output.weight = self.tok_embeddings.weight

    config = tiny_config("llama")
    assert isinstance(config.pad_token_id, int) and 0 <= config.pad_token_id < config.vocab_size
    result = run(dataclasses.replace(LLAMA, model=NoPaddingRow), config)
    assert not result.passed
    assert result.cosine > 0.9999  # the logits agree ...
    assert result.gradients_match is False  # ... the padding row's gradient does not
    assert result.first_gradient_divergence.startswith("model.embed_tokens.weight")


def test_padding_id_outside_the_vocabulary_is_refused_in_one_line():
    import pytest

    config = tiny_config("llama")
    config.pad_token_id = config.vocab_size
    with pytest.raises(ValueError, match="pad_token_id=512 is not a row of the word table"):
        LLAMA.args.from_hf_config(config)


def test_bf16_threshold_still_catches_a_real_bug():
    spec = with_adapter_rows(
        **{
            "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w3.weight",
            "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w1.weight",
        }
    )
    assert not run(spec, tiny_config("llama"), dtype="bf16").passed


def test_divergence_is_silent_when_models_agree():
    from codegen.verify.divergence import find_divergence
    from codegen.verify.hf_checkpoint import random_hf_model

    config = tiny_config("llama")
    hf_model = random_hf_model(config)
    args, model, adapter = LLAMA.build(config)
    model.load_state_dict(adapter.from_hf(hf_model.state_dict()), strict=False)
    tokens = torch.randint(0, config.vocab_size, (1, 16))
    assert find_divergence(model.eval(), hf_model, tokens, 1e-4) is None
