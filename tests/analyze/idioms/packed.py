"""Fixture "packed": one q/k/v projection laid out per kv-head group, pairs-interleaved RoPE.

Idioms: the fused projection's rows are grouped per kv head (each group: its q heads, then
one k head, then one v head), split by a `view(b, t, kv, group + 2, d)`; RoPE rotates
adjacent pairs through `view(..., d // 2, 2)` and a transpose back; layers are built through
an `init_method(nn.Linear, ...)` argument (`skip_init` or a plain constructor) and a closure
factory for the MLP projections; a rotary module that switches to dynamic NTK scaling when
`rope_scaling["type"] == "dynamic"`; the causal-LM class has no conventional suffix and is
named only by `auto_map` (config.json `architectures` names a class the file does not have).
"""

from __future__ import annotations

from pathlib import Path

from tests.analyze.idioms.common import write_folder

MODELING = """
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_packed import PackedConfig


def default_init(cls, *args, **kwargs):
    return cls(*args, **kwargs)


def linear_factory(bias):
    def make(fan_in, fan_out):
        return nn.Linear(fan_in, fan_out, bias=bias)

    return make


class PackedNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (x.float() * scale).to(x.dtype) * self.weight


class PackedRotary(nn.Module):
    def __init__(self, dim, base, max_positions, scaling=None):
        super().__init__()
        self.dim = dim
        self.base = base
        self.max_positions = max_positions
        self.scaling_type = scaling["type"] if scaling else None
        self.factor = scaling["factor"] if scaling else 1.0

    def forward(self, x, position_ids):
        seq_len = int(position_ids.max()) + 1
        base = self.base
        if self.scaling_type == "dynamic" and seq_len > self.max_positions:
            growth = self.factor * seq_len / self.max_positions - (self.factor - 1)
            base = base * growth ** (self.dim / (self.dim - 2))
        steps = torch.arange(0, self.dim, 2, dtype=torch.int64, device=x.device).float()
        inv_freq = 1.0 / (base ** (steps / self.dim))
        angles = position_ids[..., None].float() * inv_freq
        return angles.cos().to(x.dtype), angles.sin().to(x.dtype)


def rotate_pairs(x, cos, sin):
    b, h, t, d = x.shape
    pairs = x.view(b, h, t, d // 2, 2).transpose(-1, -2)
    even, odd = pairs[..., 0, :], pairs[..., 1, :]
    cos, sin = cos[:, None], sin[:, None]
    turned = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-2)
    return turned.transpose(-1, -2).reshape(b, h, t, d)


class PackedAttention(nn.Module):
    def __init__(self, config, init_method=default_init):
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.group = self.heads // self.kv_heads
        width = (self.heads + 2 * self.kv_heads) * self.head_dim
        bias = config.qkv_bias
        self.query_key_value = init_method(nn.Linear, config.hidden_size, width, bias=bias)
        width = self.heads * self.head_dim
        self.dense = init_method(nn.Linear, width, config.hidden_size, bias=False)
        self.rotary = PackedRotary(
            self.head_dim, config.rope_theta, config.max_position_embeddings, config.rope_scaling
        )

    def forward(self, x, position_ids):
        b, t, _ = x.shape
        mixed = self.query_key_value(x).view(b, t, self.kv_heads, self.group + 2, self.head_dim)
        q = mixed[:, :, :, : self.group].reshape(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = mixed[:, :, :, self.group].transpose(1, 2)
        v = mixed[:, :, :, self.group + 1].transpose(1, 2)
        cos, sin = self.rotary(v, position_ids)
        q = rotate_pairs(q, cos, sin)
        k = rotate_pairs(k, cos, sin)
        k = k.repeat_interleave(self.group, dim=1)
        v = v.repeat_interleave(self.group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.dense(out.transpose(1, 2).reshape(b, t, -1))


class PackedMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        make = linear_factory(False)
        self.w1 = make(config.hidden_size, config.intermediate_size)
        self.w3 = make(config.hidden_size, config.intermediate_size)
        self.w2 = make(config.intermediate_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.w2(self.act(self.w1(x)) * self.w3(x))


class PackedBlock(nn.Module):
    def __init__(self, config, init_method):
        super().__init__()
        self.ln_1 = PackedNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = PackedAttention(config, init_method=init_method)
        self.ln_2 = PackedNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = PackedMLP(config)

    def forward(self, x, position_ids):
        x = x + self.attn(self.ln_1(x), position_ids)
        return x + self.mlp(self.ln_2(x))


class PackedPreTrainedModel(PreTrainedModel):
    config_class = PackedConfig
    base_model_prefix = "transformer"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()
        elif isinstance(module, PackedNorm):
            module.weight.data.fill_(1.0)


class PackedModel(PackedPreTrainedModel):
    def __init__(self, config, empty_init=False):
        super().__init__(config)
        init_method = skip_init if empty_init else default_init
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(
            [self._block(config, init_method) for _ in range(config.num_hidden_layers)]
        )
        self.ln_f = PackedNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def _block(self, config, init_method):
        return PackedBlock(config, init_method)

    def forward(self, input_ids, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
            position_ids = position_ids.expand(input_ids.shape[0], -1)
        x = self.wte(input_ids)
        for block in self.blocks:
            x = block(x, position_ids)
        return self.ln_f(x)


class PackedGenerator(PackedPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"embed_out.weight": "transformer.wte.weight"}

    def __init__(self, config):
        super().__init__(config)
        self.transformer = PackedModel(config)
        self.embed_out = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, **kwargs):
        hidden_states = self.transformer(input_ids, position_ids)
        return CausalLMOutputWithPast(logits=self.embed_out(hidden_states))
"""

CONFIG = {
    "architectures": ["PackedLMHeadModel"],
    "vocab_size": 32000,
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": {"type": "dynamic", "factor": 2.0},
    "qkv_bias": True,
    "hidden_act": "silu",
}

EXPECTED = {
    "category": "decoder",
    "source.model_class": "PackedGenerator",
    "attention.kind": "gqa",
    "attention.num_heads": 16,
    "attention.num_kv_heads": 4,
    "attention.head_dim": 64,
    "attention.fused_qkv": True,
    "attention.qkv_layout": "grouped",
    "attention.qkv_bias": True,
    "attention.o_bias": False,
    "rope.type": "dynamic",
    "rope.partial_rotary": 1.0,
    "rope.interleaved": True,
    "ffn.kind": "swiglu",
    "ffn.bias": False,
    "norm.kind": "rmsnorm",
    "norm.placement": "pre",
    "embedding.tied": False,
    "block.num_layers": 4,
    "state_dict.prefix": "transformer.blocks",
}


def folder(dest: Path) -> Path:
    return write_folder(
        dest,
        "packed",
        "Packed",
        MODELING,
        CONFIG,
        extra={"qkv_bias": False, "hidden_act": "silu"},
        causal_lm="PackedGenerator",
    )
