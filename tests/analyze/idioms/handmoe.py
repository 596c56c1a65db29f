"""Fixture "handmoe": a mixture of experts written by hand.

Idioms: the experts are an `nn.ModuleList` of small SwiGLU MLP modules, the router is a
module of its own (one weight applied with `F.linear`, softmax, top-k, renormalised
weights), and the MoE block loops over the experts with `torch.where` on the chosen ids;
the first layer keeps a dense MLP (`first_k_dense_replace`). Expected: softmax top-k router,
renormalised, no shared experts, one dense layer, per-expert weights on disk.
"""

from __future__ import annotations

from pathlib import Path

from tests.analyze.idioms.common import write_folder

MODELING = """
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_handmoe import HandmoeConfig


class HandmoeRMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class HandmoeAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.theta = config.rope_theta
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x, position_ids):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        steps = torch.arange(0, self.head_dim, 2, device=x.device).float()
        inv_freq = 1.0 / (self.theta ** (steps / self.head_dim))
        angles = position_ids[..., None].float() * inv_freq
        angles = torch.cat((angles, angles), dim=-1)[:, None]
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class HandmoeMLP(nn.Module):
    def __init__(self, hidden, inner):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class HandmoeRouter(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.weight = nn.Parameter(torch.empty(config.num_experts, config.hidden_size))

    def forward(self, x):
        probs = F.softmax(F.linear(x, self.weight), dim=-1, dtype=torch.float32)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(x.dtype), chosen


class HandmoeSparseBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.router = HandmoeRouter(config)
        self.experts = nn.ModuleList(
            [
                HandmoeMLP(config.hidden_size, config.moe_intermediate_size)
                for _ in range(config.num_experts)
            ]
        )

    def forward(self, x):
        b, t, d = x.shape
        flat = x.reshape(-1, d)
        weights, chosen = self.router(flat)
        out = torch.zeros_like(flat)
        for index, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == index)
            if token.numel() == 0:
                continue
            out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return out.view(b, t, d)


class HandmoeLayer(nn.Module):
    def __init__(self, config, index):
        super().__init__()
        self.input_layernorm = HandmoeRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = HandmoeAttention(config)
        self.post_attention_layernorm = HandmoeRMSNorm(config.hidden_size, config.rms_norm_eps)
        if index < config.first_k_dense_replace:
            self.mlp = HandmoeMLP(config.hidden_size, config.intermediate_size)
        else:
            self.mlp = HandmoeSparseBlock(config)

    def forward(self, x, position_ids):
        x = x + self.self_attn(self.input_layernorm(x), position_ids)
        return x + self.mlp(self.post_attention_layernorm(x))


class HandmoePreTrainedModel(PreTrainedModel):
    config_class = HandmoeConfig
    base_model_prefix = "model"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding, HandmoeRouter)):
            module.weight.data.normal_(mean=0.0, std=0.02)
        elif isinstance(module, HandmoeRMSNorm):
            module.weight.data.fill_(1.0)


class HandmoeModel(HandmoePreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [HandmoeLayer(config, i) for i in range(config.num_hidden_layers)]
        )
        self.norm = HandmoeRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def forward(self, input_ids, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
            position_ids = position_ids.expand(input_ids.shape[0], -1)
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, position_ids)
        return self.norm(x)


class HandmoeForCausalLM(HandmoePreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.model = HandmoeModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, **kwargs):
        return CausalLMOutputWithPast(logits=self.lm_head(self.model(input_ids, position_ids)))
"""

EXTRA = {
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_intermediate_size": 512,
    "first_k_dense_replace": 1,
}
CONFIG = {
    "architectures": ["HandmoeForCausalLM"],
    "vocab_size": 32000,
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    **EXTRA,
}

EXPECTED = {
    "category": "decoder",
    "attention.kind": "gqa",
    "attention.fused_qkv": False,
    "rope.type": "default",
    "rope.interleaved": False,
    "ffn.kind": "swiglu",
    "moe.num_experts": 8,
    "moe.top_k": 2,
    "moe.router": "softmax_topk",
    "moe.score_func": "softmax",
    "moe.norm_topk_prob": True,
    "moe.router_bias": False,
    "moe.router_linear_bias": False,
    "moe.shared_experts": 0,
    "moe.dense_layers": (0,),
    "moe.expert_layout": "per_expert",
    "norm.kind": "rmsnorm",
    "norm.placement": "pre",
    "block.num_layers": 4,
}


def folder(dest: Path) -> Path:
    return write_folder(dest, "handmoe", "Handmoe", MODELING, CONFIG, extra=EXTRA)
