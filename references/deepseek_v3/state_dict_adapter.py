"""HF DeepSeek-V3 checkpoint keys <-> house keys.

The checkpoint on disk holds one tensor per routed expert (`...experts.{}.gate_proj.weight`);
the rows with the extra `{}` stack them into the house's 3-D `experts.w1/w2/w3` in expert
order.

The attention biases exist only with attention_bias.

`q_proj` exists only when q_lora_rank is None, `q_a_proj`/`q_a_layernorm`/`q_b_proj` only
otherwise.
"""

from codegen.adapter import StateDictAdapter as _KeyMapAdapter


class StateDictAdapter(_KeyMapAdapter):
    from_hf_map = {
        "model.embed_tokens.weight": "tok_embeddings.weight",
        # multi-head latent attention
        "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
        "model.layers.{}.self_attn.q_a_proj.weight": "layers.{}.attention.wq_a.weight",
        "model.layers.{}.self_attn.q_a_proj.bias": "layers.{}.attention.wq_a.bias",
        "model.layers.{}.self_attn.q_a_layernorm.weight": "layers.{}.attention.q_norm.weight",
        "model.layers.{}.self_attn.q_b_proj.weight": "layers.{}.attention.wq_b.weight",
        "model.layers.{}.self_attn.kv_a_proj_with_mqa.weight": "layers.{}.attention.wkv_a.weight",
        "model.layers.{}.self_attn.kv_a_proj_with_mqa.bias": "layers.{}.attention.wkv_a.bias",
        "model.layers.{}.self_attn.kv_a_layernorm.weight": "layers.{}.attention.kv_norm.weight",
        "model.layers.{}.self_attn.kv_b_proj.weight": "layers.{}.attention.wkv_b.weight",
        "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
        "model.layers.{}.self_attn.o_proj.bias": "layers.{}.attention.wo.bias",
        # dense layers (the first first_k_dense_replace)
        "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w3.weight",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        # MoE layers: router (and its correction bias), routed experts stacked along dim 0
        "model.layers.{}.mlp.gate.weight": "layers.{}.moe.gate.weight",
        "model.layers.{}.mlp.gate.e_score_correction_bias": (
            "layers.{}.moe.gate.e_score_correction_bias"
        ),
        "model.layers.{}.mlp.experts.{}.gate_proj.weight": "layers.{}.moe.experts.w1",
        "model.layers.{}.mlp.experts.{}.up_proj.weight": "layers.{}.moe.experts.w3",
        "model.layers.{}.mlp.experts.{}.down_proj.weight": "layers.{}.moe.experts.w2",
        # the shared expert
        "model.layers.{}.mlp.shared_experts.gate_proj.weight": (
            "layers.{}.moe.shared_experts.w1.weight"
        ),
        "model.layers.{}.mlp.shared_experts.up_proj.weight": (
            "layers.{}.moe.shared_experts.w3.weight"
        ),
        "model.layers.{}.mlp.shared_experts.down_proj.weight": (
            "layers.{}.moe.shared_experts.w2.weight"
        ),
        "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
        "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
        "model.norm.weight": "norm.weight",
        "lm_head.weight": "output.weight",
    }
