"""DeepSeek-V3 model arguments and their mapping from an HF DeepseekV3Config."""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.config_checks import padding_row, require_settings
from codegen.layers.rope import RopeScaling

# HF settings this package hard-codes: field -> the only value it implements
FIXED_SETTINGS = {}


@dataclass
class ModelArgs:
    dim: int = 7168
    n_layers: int = 61
    n_heads: int = 128
    vocab_size: int = 129280
    norm_eps: float = 1e-6  # block and final norms; the latent q/kv norms always use 1e-6
    pad_token_id: int | None = None  # word table row that starts at zero and learns nothing
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02  # std of HF's normal init (init_weights)
    # multi-head latent attention
    q_lora_rank: int | None = 1536  # None: one wq instead of wq_a -> q_norm -> wq_b
    kv_lora_rank: int = 512  # compressed kv latent, expanded per head by wkv_b
    qk_nope_head_dim: int = 128  # the part of each q/k head without position
    qk_rope_head_dim: int = 64  # the rotated part; k's is one head shared by all heads
    v_head_dim: int = 128
    attention_bias: bool = False  # biases on wq_a, wkv_a and wo only (as HF)
    rope: RopeScaling = field(default_factory=lambda: RopeScaling(theta=10000.0))
    rope_interleave: bool = True  # rope dims stored as interleaved pairs
    # feed-forward: the first n_dense_layers are dense SwiGLU, the rest MoE
    hidden_dim: int = 18432
    n_dense_layers: int = 3
    n_routed_experts: int = 256
    n_activated_experts: int = 8  # top-k
    moe_hidden_dim: int = 2048  # each expert's feed-forward inner size
    n_shared_experts: int = 1  # one always-on SwiGLU of n_shared_experts * moe_hidden_dim
    n_expert_groups: int = 8  # experts are picked only from the best n_limited_groups groups
    n_limited_groups: int = 4
    norm_topk_prob: bool = True  # renormalise the k sigmoid scores to sum to 1
    route_scale: float = 2.5  # routed_scaling_factor, applied after renormalising

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @classmethod
    def from_hf_config(cls, hf_config) -> ModelArgs:
        """Every HF field the model reads. Not mapped: num_key_value_heads (MLA expands the
        latent kv to every head; HF passes it only to its attention backend), attention_dropout
        (inference only), num_nextn_predict_layers (the MTP head is not part of the HF model).
        """
        require_settings(hf_config, FIXED_SETTINGS)
        _check_supported(hf_config)
        return cls(
            dim=hf_config.hidden_size,
            n_layers=hf_config.num_hidden_layers,
            n_heads=hf_config.num_attention_heads,
            vocab_size=hf_config.vocab_size,
            norm_eps=hf_config.rms_norm_eps,
            pad_token_id=padding_row(
                getattr(hf_config, "pad_token_id", None), hf_config.vocab_size
            ),
            tie_word_embeddings=hf_config.tie_word_embeddings,
            initializer_range=getattr(hf_config, "initializer_range", 0.02),
            q_lora_rank=hf_config.q_lora_rank,
            kv_lora_rank=hf_config.kv_lora_rank,
            qk_nope_head_dim=hf_config.qk_nope_head_dim,
            qk_rope_head_dim=hf_config.qk_rope_head_dim,
            v_head_dim=hf_config.v_head_dim,
            attention_bias=hf_config.attention_bias,
            rope=RopeScaling.from_hf(hf_config.rope_parameters, hf_config.max_position_embeddings),
            rope_interleave=bool(hf_config.rope_interleave),
            hidden_dim=hf_config.intermediate_size,
            n_dense_layers=hf_config.first_k_dense_replace,
            n_routed_experts=hf_config.n_routed_experts,
            n_activated_experts=hf_config.num_experts_per_tok,
            moe_hidden_dim=hf_config.moe_intermediate_size,
            n_shared_experts=hf_config.n_shared_experts,
            n_expert_groups=hf_config.n_group,
            n_limited_groups=hf_config.topk_group,
            norm_topk_prob=bool(hf_config.norm_topk_prob),
            route_scale=hf_config.routed_scaling_factor,
        )


def _check_supported(hf_config) -> None:
    def fail(message: str):
        raise NotImplementedError(f"deepseek_v3: {message}")

    if hf_config.hidden_act != "silu":
        fail(f"hidden_act {hf_config.hidden_act!r} is not supported (only 'silu')")
    for name in ("n_group", "topk_group", "num_experts_per_tok", "first_k_dense_replace"):
        if getattr(hf_config, name) is None:
            fail(f"{name}=None is not supported (HF's model needs a value)")
    experts, groups = hf_config.n_routed_experts, hf_config.n_group
    if experts % groups or experts // groups < 2:
        fail(f"n_routed_experts={experts} must split into n_group={groups} groups of >= 2")
    if not hf_config.topk_group <= groups:
        fail(f"topk_group={hf_config.topk_group} > n_group={groups}")
    if hf_config.num_experts_per_tok > hf_config.topk_group * experts // groups:
        fail(f"num_experts_per_tok={hf_config.num_experts_per_tok} > experts in topk_group groups")
    rope = hf_config.rope_parameters
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        fail("partial_rotary_factor is not supported (qk_rope_head_dim is the rotated part)")
    if rope.get("rope_type", "default") != "default" and rope.get("mscale_all_dim"):
        if not rope.get("factor"):
            fail("mscale_all_dim needs rope_parameters['factor'] (HF scales the softmax by it)")
