"""A remote-code checkpoint folder written the way older hub code is: an `__init__`-style
config with legacy field names (`n_embd`, `n_head`, `n_layer`, `seq_length`,
`layer_norm_epsilon`, `multi_query`, `kv_channels`, `rotary_pct`, a top-level `rope_theta`,
`rope_scaling` with `type`) and a modeling file that reads them directly. Our own code, no
third-party modeling file: a pre-norm decoder with RMSNorm, multi-query attention, partial
rotary (rotate-half on the first `rotary_pct` of each head) with optional linear scaling,
and a SwiGLU MLP.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIGURATION = """
from transformers import PretrainedConfig


class OldNetConfig(PretrainedConfig):
    model_type = "oldnet"

    def __init__(
        self,
        vocab_size=32000,
        n_embd=2048,
        n_head=16,
        n_layer=24,
        ffn_hidden_size=5632,
        seq_length=4096,
        layer_norm_epsilon=1e-5,
        multi_query=True,
        kv_channels=None,
        rotary_pct=0.5,
        rope_theta=10000.0,
        rope_scaling=None,
        tie_word_embeddings=False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.n_embd = n_embd
        self.n_head = n_head
        self.n_layer = n_layer
        self.ffn_hidden_size = ffn_hidden_size
        self.seq_length = seq_length
        self.layer_norm_epsilon = layer_norm_epsilon
        self.multi_query = multi_query
        self.kv_channels = kv_channels if kv_channels is not None else n_embd // n_head
        self.rotary_pct = rotary_pct
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
"""

MODELING = """
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_oldnet import OldNetConfig


class OldNetRMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)


class OldNetRotary(nn.Module):
    def __init__(self, dim, base, scaling=None):
        super().__init__()
        self.dim, self.base = dim, base
        self.register_buffer("inv_freq", self.frequencies(), persistent=False)
        self.factor = 1.0
        if scaling is not None and scaling.get("type", scaling.get("rope_type")) == "linear":
            self.factor = scaling["factor"]

    def frequencies(self):
        return 1.0 / (self.base ** (torch.arange(0, self.dim, 2).float() / self.dim))

    def forward(self, x, position_ids):
        t = position_ids.float() / self.factor
        freqs = t[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_partial_rotary(x, cos, sin, rotary_dim):
    rot, passthrough = x[..., :rotary_dim], x[..., rotary_dim:]
    rot = rot * cos[:, None] + rotate_half(rot) * sin[:, None]
    return torch.cat((rot, passthrough), dim=-1)


class OldNetAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.n_head
        self.num_kv_heads = 1 if config.multi_query else config.n_head
        self.head_dim = config.kv_channels
        self.rotary_dim = int(config.rotary_pct * self.head_dim)
        self.q_proj = nn.Linear(config.n_embd, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.n_embd, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.n_embd, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.n_embd, bias=False)
        self.rotary_emb = OldNetRotary(self.rotary_dim, config.rope_theta, config.rope_scaling)

    def forward(self, hidden_states, position_ids):
        b, t, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.rotary_emb(hidden_states, position_ids)
        q = apply_partial_rotary(q, cos, sin, self.rotary_dim)
        k = apply_partial_rotary(k, cos, sin, self.rotary_dim)
        repeat = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(repeat, dim=1)
        v = v.repeat_interleave(repeat, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class OldNetMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.ffn_hidden_size, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.ffn_hidden_size, bias=False)
        self.down_proj = nn.Linear(config.ffn_hidden_size, config.n_embd, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class OldNetBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.input_layernorm = OldNetRMSNorm(config.n_embd, config.layer_norm_epsilon)
        self.self_attn = OldNetAttention(config)
        self.post_attention_layernorm = OldNetRMSNorm(config.n_embd, config.layer_norm_epsilon)
        self.mlp = OldNetMLP(config)

    def forward(self, hidden_states, position_ids):
        hidden_states = hidden_states + self.self_attn(
            self.input_layernorm(hidden_states), position_ids
        )
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class OldNetPreTrainedModel(PreTrainedModel):
    config_class = OldNetConfig
    base_model_prefix = "model"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
        elif isinstance(module, OldNetRMSNorm):
            module.weight.data.fill_(1.0)
        elif isinstance(module, OldNetRotary):  # models are built on the meta device
            module.inv_freq.copy_(module.frequencies())


class OldNetModel(OldNetPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList([OldNetBlock(config) for _ in range(config.n_layer)])
        self.norm = OldNetRMSNorm(config.n_embd, config.layer_norm_epsilon)
        self.post_init()

    def forward(self, input_ids, position_ids=None, **kwargs):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
            position_ids = position_ids.expand(input_ids.shape[0], -1)
        hidden_states = self.embed_tokens(input_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, position_ids)
        return self.norm(hidden_states)


class OldNetForCausalLM(OldNetPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.model = OldNetModel(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, **kwargs):
        hidden_states = self.model(input_ids, position_ids)
        return CausalLMOutputWithPast(logits=self.lm_head(hidden_states))
"""

# a real-sized config.json as such a checkpoint ships it
CONFIG = {
    "model_type": "oldnet",
    "architectures": ["OldNetForCausalLM"],
    "auto_map": {
        "AutoConfig": "configuration_oldnet.OldNetConfig",
        "AutoModelForCausalLM": "modeling_oldnet.OldNetForCausalLM",
    },
    "vocab_size": 32000,
    "n_embd": 2048,
    "n_head": 16,
    "n_layer": 24,
    "ffn_hidden_size": 5632,
    "seq_length": 4096,
    "layer_norm_epsilon": 1e-5,
    "multi_query": True,
    "kv_channels": 128,
    "rotary_pct": 0.5,
    "rope_theta": 500000.0,
    "rope_scaling": {"type": "linear", "factor": 2.0},
    "tie_word_embeddings": False,
}


def legacy_folder(dest: Path, **config) -> Path:
    folder = Path(dest) / "oldnet"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configuration_oldnet.py").write_text(CONFIGURATION.lstrip())
    (folder / "modeling_oldnet.py").write_text(MODELING.lstrip())
    (folder / "config.json").write_text(json.dumps({**CONFIG, **config}, indent=2))
    return folder
