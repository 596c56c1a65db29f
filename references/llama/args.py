"""Llama model arguments and their mapping from an HF LlamaConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.config_checks import padding_row, require_settings
from codegen.layers.rope import RopeScaling

# HF settings this package hard-codes: field -> the only value it implements
FIXED_SETTINGS = {"hidden_act": "silu"}


@dataclass
class ModelArgs:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8  # each shared by n_heads // n_kv_heads query heads
    head_dim: int = 128
    hidden_dim: int = 14336  # feed-forward inner size
    vocab_size: int = 128256
    norm_eps: float = 1e-5
    rope: RopeScaling = field(default_factory=lambda: RopeScaling(theta=500000.0))
    attention_bias: bool = False  # q/k/v/o biases
    mlp_bias: bool = False  # gate/up/down biases
    pad_token_id: int | None = None  # word table row that starts at zero and learns nothing
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02  # std of HF's normal init (init_weights)

    def __post_init__(self):
        # HF llama's default RoPE ignores partial_rotary_factor; its scaled types would shrink
        # the frequency table below the head size and fail, so refuse rather than guess
        # (a proportional table spans the whole head, the factor zeroing its tail).
        if self.rope.partial_rotary_factor != 1.0 and self.rope.rope_type not in (
            "default",
            "proportional",
        ):
            raise NotImplementedError(
                f"llama: partial_rotary_factor={self.rope.partial_rotary_factor} with "
                f"rope_type {self.rope.rope_type!r} is not supported (this attention rotates the"
                " whole head)"
            )

    @classmethod
    def from_hf_config(cls, hf_config) -> ModelArgs:
        require_settings(hf_config, FIXED_SETTINGS)
        return cls(
            dim=hf_config.hidden_size,
            n_layers=hf_config.num_hidden_layers,
            n_heads=hf_config.num_attention_heads,
            n_kv_heads=hf_config.num_key_value_heads,
            head_dim=getattr(hf_config, "head_dim", None)
            or hf_config.hidden_size // hf_config.num_attention_heads,
            hidden_dim=hf_config.intermediate_size,
            vocab_size=hf_config.vocab_size,
            norm_eps=hf_config.rms_norm_eps,
            rope=RopeScaling.from_hf(hf_config.rope_parameters, hf_config.max_position_embeddings),
            attention_bias=hf_config.attention_bias,
            mlp_bias=hf_config.mlp_bias,
            pad_token_id=padding_row(
                getattr(hf_config, "pad_token_id", None), hf_config.vocab_size
            ),
            tie_word_embeddings=hf_config.tie_word_embeddings,
            initializer_range=getattr(hf_config, "initializer_range", 0.02),
        )
