"""Qwen3 model arguments and their mapping from an HF Qwen3Config.

Qwen3Config resolves its window switches itself: `sliding_window` is None unless
`use_sliding_window`, and `layer_types` (one entry per layer) defaults to "sliding_attention"
for layers >= `max_window_layers`. Those two resolved fields are what is mapped here, so an
explicit `layer_types` in a config.json wins over `max_window_layers`, exactly as in HF.
Not mapped, on purpose: `attention_dropout` (training only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.config_checks import padding_row, require_settings
from codegen.layers.rope import RopeScaling

# HF settings this package hard-codes: field -> the only value it implements
FIXED_SETTINGS = {}

LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass
class ModelArgs:
    dim: int = 4096
    n_layers: int = 36
    n_heads: int = 32
    n_kv_heads: int = 8  # each shared by n_heads // n_kv_heads query heads
    head_dim: int = 128  # explicit: n_heads * head_dim need not equal dim
    hidden_dim: int = 12288  # feed-forward inner size
    vocab_size: int = 151936
    norm_eps: float = 1e-6  # every norm's epsilon, q_norm and k_norm included
    rope: RopeScaling = field(default_factory=lambda: RopeScaling(theta=1000000.0))
    attention_bias: bool = False  # q/k/v/o biases
    # A "sliding_attention" layer's query at i sees keys j with i - sliding_window < j <= i
    # (the window counts the query itself); None when no layer slides.
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None  # one of LAYER_TYPES per layer; None: all full
    pad_token_id: int | None = None  # word table row that starts at zero and learns nothing
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02  # std of HF's normal init (init_weights)

    def __post_init__(self):
        self.layer_types = tuple(self.layer_types or ("full_attention",) * self.n_layers)
        if len(self.layer_types) != self.n_layers:
            raise ValueError(f"{len(self.layer_types)} layer_types for {self.n_layers} layers")
        unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
        if unknown:
            raise NotImplementedError(f"layer_types {unknown} are not supported")
        if "sliding_attention" in self.layer_types and self.sliding_window is None:
            raise ValueError("layer_types has sliding_attention layers but sliding_window is None")

    @classmethod
    def from_hf_config(cls, hf_config) -> ModelArgs:
        require_settings(hf_config, FIXED_SETTINGS)
        if hf_config.hidden_act != "silu":
            raise NotImplementedError(f"hidden_act {hf_config.hidden_act!r}: only silu (SwiGLU)")
        rope = hf_config.rope_parameters
        # HF's scaled rope types shrink the rotary dim by partial_rotary_factor, which this
        # attention (rotary over the whole head) does not do: that combination is refused.
        # (A proportional table spans the whole head, the factor zeroing its tail.)
        partial = rope.get("partial_rotary_factor", 1.0) != 1.0
        if partial and rope.get("rope_type", "default") not in ("default", "proportional"):
            raise NotImplementedError(
                f"qwen3: rope_parameters {rope}: a partial_rotary_factor with a scaled"
                " rope_type is not supported (this attention rotates the whole head)"
            )
        return cls(
            dim=hf_config.hidden_size,
            n_layers=hf_config.num_hidden_layers,
            n_heads=hf_config.num_attention_heads,
            n_kv_heads=hf_config.num_key_value_heads,
            head_dim=hf_config.head_dim,
            hidden_dim=hf_config.intermediate_size,
            vocab_size=hf_config.vocab_size,
            norm_eps=hf_config.rms_norm_eps,
            rope=RopeScaling.from_hf(rope, hf_config.max_position_embeddings),
            attention_bias=hf_config.attention_bias,
            sliding_window=hf_config.sliding_window,
            layer_types=tuple(hf_config.layer_types),
            pad_token_id=padding_row(
                getattr(hf_config, "pad_token_id", None), hf_config.vocab_size
            ),
            tie_word_embeddings=hf_config.tie_word_embeddings,
            initializer_range=getattr(hf_config, "initializer_range", 0.02),
        )
