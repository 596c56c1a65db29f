"""Qwen3-MoE model arguments and their mapping from an HF Qwen3MoeConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.config_checks import padding_row, require_settings
from codegen.layers.rope import RopeScaling

# HF settings this package hard-codes: field -> the only value it implements
FIXED_SETTINGS = {}


@dataclass
class ModelArgs:
    dim: int = 2048
    n_layers: int = 48
    n_heads: int = 32
    n_kv_heads: int = 4  # each shared by n_heads // n_kv_heads query heads
    head_dim: int = 128  # explicit: n_heads * head_dim need not equal dim
    hidden_dim: int = 6144  # feed-forward inner size of the dense layers
    vocab_size: int = 151936
    norm_eps: float = 1e-6  # every norm's epsilon
    rope: RopeScaling = field(default_factory=lambda: RopeScaling(theta=1000000.0))
    attention_bias: bool = False
    sliding_window: int | None = None  # every layer attends to at most this many keys
    pad_token_id: int | None = None  # word table row that starts at zero and learns nothing
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02  # std of HF's normal init (init_weights)
    # mixture of experts
    num_experts: int = 128  # 0: every layer is dense
    top_k: int = 8  # experts per token
    moe_hidden_dim: int = 768  # feed-forward inner size of each expert
    norm_topk_prob: bool = True  # renormalise the top-k softmax probabilities to sum to 1
    decoder_sparse_step: int = 1  # layer i is MoE when (i + 1) % step == 0 ...
    mlp_only_layers: tuple[int, ...] = ()  # ... and i is not listed here

    def is_moe_layer(self, layer_id: int) -> bool:
        """HF Qwen3MoeDecoderLayer's rule, verbatim."""
        return (
            layer_id not in self.mlp_only_layers
            and self.num_experts > 0
            and (layer_id + 1) % self.decoder_sparse_step == 0
        )

    @classmethod
    def from_hf_config(cls, hf_config) -> ModelArgs:
        require_settings(hf_config, FIXED_SETTINGS)
        if hf_config.hidden_act != "silu":
            raise NotImplementedError(
                f"qwen3_moe: hidden_act {hf_config.hidden_act!r} is not supported (only 'silu')"
            )
        if hf_config.num_experts_per_tok > hf_config.num_experts > 0:
            raise ValueError(
                f"qwen3_moe: num_experts_per_tok {hf_config.num_experts_per_tok} > "
                f"num_experts {hf_config.num_experts}"
            )
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
            # HF Qwen3-MoE reads only `sliding_window` (Qwen3MoeConfig sets it to None unless
            # use_sliding_window) and applies it to every layer.
            sliding_window=hf_config.sliding_window,
            pad_token_id=padding_row(
                getattr(hf_config, "pad_token_id", None), hf_config.vocab_size
            ),
            tie_word_embeddings=hf_config.tie_word_embeddings,
            initializer_range=getattr(hf_config, "initializer_range", 0.02),
            num_experts=hf_config.num_experts,
            top_k=hf_config.num_experts_per_tok,
            moe_hidden_dim=hf_config.moe_intermediate_size,
            norm_topk_prob=hf_config.norm_topk_prob,
            decoder_sparse_step=hf_config.decoder_sparse_step,
            mlp_only_layers=tuple(hf_config.mlp_only_layers or ()),
        )
