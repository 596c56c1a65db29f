"""Fixture "flashy": a llama-like decoder written the way much hub code is.

Idioms: flash-attn imported under `try/except ImportError` with a flag that picks a
flash-only attention class when it imported (here it does not, so the eager class runs);
`self.rotary_emb(value_states, seq_len=...)` passing v for its dtype only; decoder layers
built by an `nn.ModuleList` comprehension over a helper function; MLP projections built with
`skip_init`; config.json without `architectures` (the causal-LM class comes from
`auto_map`). Expected: GQA, separate q/k/v, default half-split RoPE, SwiGLU, RMSNorm pre-norm.
"""

from __future__ import annotations

from pathlib import Path

from tests.analyze.idioms.common import write_folder

MODELING = """
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_flashy import FlashyConfig

try:
    from flash_attn import flash_attn_func

    HAS_FLASH = True
except ImportError:
    flash_attn_func = None
    HAS_FLASH = False


class FlashyRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class FlashyRotary(nn.Module):
    def __init__(self, dim, base=10000.0):
        super().__init__()
        self.dim = dim
        self.base = base

    def forward(self, x, seq_len):
        steps = torch.arange(0, self.dim, 2, device=x.device).float()
        inv_freq = 1.0 / (self.base ** (steps / self.dim))
        t = torch.arange(seq_len, device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(q, k, cos, sin, position_ids):
    cos = cos[position_ids].unsqueeze(1)
    sin = sin[position_ids].unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class FlashyAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q_proj = nn.Linear(self.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(self.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(self.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, self.hidden_size, bias=False)
        self.rotary_emb = FlashyRotary(self.head_dim, base=config.rope_theta)

    def project(self, hidden_states, position_ids):
        bsz, q_len, _ = hidden_states.shape
        query_states = self.q_proj(hidden_states).view(bsz, q_len, self.num_heads, self.head_dim)
        key_states = self.k_proj(hidden_states).view(bsz, q_len, self.num_kv_heads, self.head_dim)
        value_states = self.v_proj(hidden_states).view(bsz, q_len, self.num_kv_heads, self.head_dim)
        query_states = query_states.transpose(1, 2)
        key_states = key_states.transpose(1, 2)
        value_states = value_states.transpose(1, 2)
        seq_len = int(position_ids.max()) + 1
        cos, sin = self.rotary_emb(value_states, seq_len=seq_len)
        query_states, key_states = apply_rotary(query_states, key_states, cos, sin, position_ids)
        groups = self.num_heads // self.num_kv_heads
        key_states = key_states.repeat_interleave(groups, dim=1)
        value_states = value_states.repeat_interleave(groups, dim=1)
        return query_states, key_states, value_states

    def forward(self, hidden_states, position_ids):
        bsz, q_len, _ = hidden_states.shape
        query_states, key_states, value_states = self.project(hidden_states, position_ids)
        scores = torch.matmul(query_states, key_states.transpose(2, 3)) / math.sqrt(self.head_dim)
        mask = torch.full((q_len, q_len), float("-inf"), device=scores.device).triu(1)
        probs = F.softmax(scores + mask, dim=-1, dtype=torch.float32).to(query_states.dtype)
        out = torch.matmul(probs, value_states).transpose(1, 2).reshape(bsz, q_len, -1)
        return self.o_proj(out)


class FlashyFlashAttention(FlashyAttention):
    def forward(self, hidden_states, position_ids):
        bsz, q_len, _ = hidden_states.shape
        query_states, key_states, value_states = self.project(hidden_states, position_ids)
        out = flash_attn_func(
            query_states.transpose(1, 2),
            key_states.transpose(1, 2),
            value_states.transpose(1, 2),
            causal=True,
        )
        return self.o_proj(out.reshape(bsz, q_len, -1))


class FlashyMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden, inner = config.hidden_size, config.intermediate_size
        self.gate_proj = skip_init(nn.Linear, hidden, inner, bias=False)
        self.up_proj = skip_init(nn.Linear, hidden, inner, bias=False)
        self.down_proj = skip_init(nn.Linear, inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class FlashyDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        use_flash = config.use_flash_attn and HAS_FLASH
        attention_class = FlashyFlashAttention if use_flash else FlashyAttention
        self.self_attn = attention_class(config)
        self.mlp = FlashyMLP(config)
        self.input_layernorm = FlashyRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = FlashyRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, position_ids):
        residual = hidden_states
        hidden_states = self.self_attn(self.input_layernorm(hidden_states), position_ids)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        return residual + hidden_states


def build_layer(config, index):
    return FlashyDecoderLayer(config, layer_idx=index)


class FlashyPreTrainedModel(PreTrainedModel):
    config_class = FlashyConfig
    base_model_prefix = "model"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
        elif isinstance(module, FlashyRMSNorm):
            module.weight.data.fill_(1.0)


class FlashyModel(FlashyPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [build_layer(config, i) for i in range(config.num_hidden_layers)]
        )
        self.norm = FlashyRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_init()

    def forward(self, input_ids, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
            position_ids = position_ids.expand(input_ids.shape[0], -1)
        hidden_states = self.embed_tokens(input_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_ids)
        return self.norm(hidden_states)


class FlashyForCausalLM(FlashyPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.model = FlashyModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, **kwargs):
        hidden_states = self.model(input_ids, position_ids)
        return CausalLMOutputWithPast(logits=self.lm_head(hidden_states))
"""

CONFIG = {
    "vocab_size": 32000,
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "use_flash_attn": True,
}

# the labelled features: what a correct analysis reports
EXPECTED = {
    "category": "decoder",
    "attention.kind": "gqa",
    "attention.num_heads": 16,
    "attention.num_kv_heads": 4,
    "attention.head_dim": 64,
    "attention.fused_qkv": False,
    "attention.qkv_bias": False,
    "attention.sliding_window": "none",
    "attention.scale": "default",
    "rope.type": "default",
    "rope.partial_rotary": 1.0,
    "rope.interleaved": False,
    "ffn.kind": "swiglu",
    "ffn.fused_gate_up": False,
    "norm.kind": "rmsnorm",
    "norm.placement": "pre",
    "embedding.tied": False,
    "head.logit_scale": False,
    "block.num_layers": 4,
}


def folder(dest: Path) -> Path:
    return write_folder(dest, "flashy", "Flashy", MODELING, CONFIG, extra={"use_flash_attn": True})
