"""Fixture "heldout": written after the analyzer fixes, to measure them on code they were
not tuned on (its first score is in the report).

Idioms: multi-query attention from one `c_attn` projection split contiguously with
`torch.split(..., [q, kv, kv], dim=2)`; partial rotary (a quarter of the head) through a
rotary module called with the *value* tensor for its dtype and a `seq_len=` keyword,
rotate-half on the rotated part; the layers built by a factory closure handed to a
ModuleList comprehension; a post-norm block (norms on the sublayer outputs); a logit scale
multiplying the hidden states on their way into a plain head; tied embeddings.
Analysis only: its inverse frequencies are a non-persistent buffer, which transformers'
`from_pretrained` leaves uninitialised for remote code without an `_init_weights` for it
(the HF side itself would be wrong), and the qwen2 reference the plan picks reads
`hidden_act`, which this config does not have.
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

from .configuration_heldout import HeldoutConfig


class HeldoutNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class HeldoutRotary(nn.Module):
    def __init__(self, dim, base):
        super().__init__()
        self.register_buffer(
            "inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), persistent=False
        )

    def forward(self, x, seq_len=None):
        t = torch.arange(seq_len, device=x.device).float()
        freqs = torch.einsum("i,j->ij", t, self.inv_freq.to(x.device))
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class HeldoutAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.rot = int(self.head_dim * config.rotary_pct)
        self.c_attn = nn.Linear(config.hidden_size, (self.heads + 2) * self.head_dim, bias=True)
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.rotary_emb = HeldoutRotary(self.rot, config.rope_theta)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = torch.split(
            self.c_attn(x), [self.heads * self.head_dim, self.head_dim, self.head_dim], dim=2
        )
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, 1, self.head_dim).transpose(1, 2)
        v = v.view(b, t, 1, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary_emb(v, seq_len=t)
        q_rot, q_pass = q[..., : self.rot], q[..., self.rot :]
        k_rot, k_pass = k[..., : self.rot], k[..., self.rot :]
        q_rot = q_rot * cos + rotate_half(q_rot) * sin
        k_rot = k_rot * cos + rotate_half(k_rot) * sin
        q = torch.cat((q_rot, q_pass), dim=-1)
        k = torch.cat((k_rot, k_pass), dim=-1).expand(b, self.heads, t, self.head_dim)
        v = v.expand(b, self.heads, t, self.head_dim)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(out.transpose(1, 2).reshape(b, t, -1))


class HeldoutMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.w1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.w2 = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.c_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.c_proj(self.w1(x) * F.silu(self.w2(x)))


class HeldoutBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attn = HeldoutAttention(config)
        self.ln_1 = HeldoutNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = HeldoutMLP(config)
        self.ln_2 = HeldoutNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x):
        x = x + self.ln_1(self.attn(x))
        return x + self.ln_2(self.mlp(x))


def block_factory(config):
    def build():
        return HeldoutBlock(config)

    return build


class HeldoutPreTrainedModel(PreTrainedModel):
    config_class = HeldoutConfig
    base_model_prefix = "transformer"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)


class HeldoutModel(HeldoutPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        build = block_factory(config)
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.h = nn.ModuleList([build() for _ in range(config.num_hidden_layers)])
        self.ln_f = HeldoutNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def forward(self, input_ids):
        x = self.wte(input_ids)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class HeldoutForCausalLM(HeldoutPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.transformer = HeldoutModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.logit_scale = config.logit_scale
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden_states = self.transformer(input_ids) * self.logit_scale
        return CausalLMOutputWithPast(logits=self.lm_head(hidden_states))
"""

EXTRA = {"rotary_pct": 0.25, "logit_scale": 0.5}
CONFIG = {
    "architectures": ["HeldoutForCausalLM"],
    "vocab_size": 32000,
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    **EXTRA,
}

EXPECTED = {
    "category": "decoder",
    "attention.kind": "mqa",
    "attention.num_heads": 16,
    "attention.num_kv_heads": 1,
    "attention.head_dim": 64,
    "attention.fused_qkv": True,
    "attention.qkv_layout": "contiguous",
    "attention.qkv_bias": True,
    "attention.o_bias": False,
    "rope.type": "default",
    "rope.partial_rotary": 0.25,
    "rope.interleaved": False,
    "ffn.kind": "swiglu",
    "ffn.bias": False,
    "norm.kind": "rmsnorm",
    "norm.placement": "post",
    "embedding.tied": True,
    "head.logit_scale": True,
    "block.num_layers": 4,
    "state_dict.prefix": "transformer.h",
}


def folder(dest: Path) -> Path:
    return write_folder(dest, "heldout", "Heldout", MODELING, CONFIG, extra=EXTRA)
