"""Fixture "alibi": positions by ALiBi, logn query scaling, a normalised output head.

Idioms: no rotary embedding; the backbone builds per-head ALiBi slopes times key distance
and every layer adds them to the attention scores; queries are multiplied by
log(position) / log(training length) past the training length (logn attention, switched by
`use_logn_attn`); q/k/v come from one projection laid out per head (q, k, v of head 0, then
of head 1...); LayerNorm with bias and a GELU MLP with biases; the output head normalises
its weight rows before the product (`NormHead`), and hidden states are divided by a config
value before it (a logit scale). Nothing here has a rule: the plan must stop, naming ALiBi,
the logn scaling and the normalised head.
"""

from __future__ import annotations

from pathlib import Path

from tests.analyze.idioms.common import write_folder

MODELING = """
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_alibi import AlibiConfig


def alibi_slopes(heads):
    closest = 2 ** math.floor(math.log2(heads))
    base = 2 ** (-(2 ** -(math.log2(closest) - 3)))
    slopes = torch.pow(torch.tensor(base), torch.arange(1, closest + 1))
    if closest != heads:
        extra = 2 ** (-(2 ** -(math.log2(2 * closest) - 3)))
        more = torch.pow(torch.tensor(extra), torch.arange(1, 2 * (heads - closest) + 1, 2))
        slopes = torch.cat([slopes, more])
    return slopes


def position_bias(heads, length, device):
    steps = torch.arange(length, device=device)
    distance = steps[None, :] - steps[:, None]
    return alibi_slopes(heads).to(device)[:, None, None] * distance[None].float()


class AlibiAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.train_length = config.seq_length
        self.use_logn = config.use_logn_attn
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=True)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=True)

    def forward(self, hidden_states, bias, positions):
        b, t, _ = hidden_states.shape
        fused = self.query_key_value(hidden_states).view(b, t, self.heads, 3 * self.head_dim)
        q, k, v = fused.split(self.head_dim, dim=-1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.use_logn:
            stretched = positions.float().clamp(min=self.train_length)
            logn = torch.log(stretched) / math.log(self.train_length)
            q = q * logn[:, None, :, None].to(q.dtype)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores + bias
        causal = torch.full((t, t), float("-inf"), device=scores.device).triu(1)
        probs = torch.softmax(scores + causal, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, -1)
        return self.dense(out)


class AlibiMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc_out = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x):
        return self.fc_out(F.gelu(self.fc_in(x)))


class AlibiBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = AlibiAttention(config)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = AlibiMLP(config)

    def forward(self, x, bias, positions):
        x = x + self.attn(self.ln_1(x), bias, positions)
        return x + self.mlp(self.ln_2(x))


class NormHead(nn.Module):
    def __init__(self, hidden_size, vocab_size):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))

    def forward(self, hidden_states):
        return F.linear(hidden_states, F.normalize(self.weight, dim=-1))


class AlibiPreTrainedModel(PreTrainedModel):
    config_class = AlibiConfig
    base_model_prefix = "transformer"

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding, NormHead)):
            module.weight.data.normal_(mean=0.0, std=0.02)


class AlibiModel(AlibiPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.heads = config.num_attention_heads
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.h = nn.ModuleList([AlibiBlock(config) for _ in range(config.num_hidden_layers)])
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def forward(self, input_ids, position_ids=None):
        t = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device)[None]
        bias = position_bias(self.heads, t, input_ids.device)
        x = self.wte(input_ids)
        for block in self.h:
            x = block(x, bias, position_ids)
        return self.ln_f(x)


class AlibiForCausalLM(AlibiPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.transformer = AlibiModel(config)
        self.lm_head = NormHead(config.hidden_size, config.vocab_size)
        self.logit_divisor = config.logit_divisor
        self.post_init()

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, **kwargs):
        hidden_states = self.transformer(input_ids, position_ids)
        logits = self.lm_head(hidden_states / self.logit_divisor)
        return CausalLMOutputWithPast(logits=logits)
"""

CONFIG = {
    "architectures": ["AlibiForCausalLM"],
    "vocab_size": 32000,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "layer_norm_eps": 1e-5,
    "seq_length": 2048,
    "use_logn_attn": True,
    "logit_divisor": 4.0,
}

EXPECTED = {
    "category": "decoder",
    "attention.kind": "mha",
    "attention.num_heads": 16,
    "attention.head_dim": 64,
    "attention.fused_qkv": True,
    "attention.qkv_layout": "interleaved",
    "attention.qkv_bias": True,
    "attention.o_bias": True,
    "rope.type": "none",
    "ffn.kind": "gelu_mlp",
    "ffn.bias": True,
    "norm.kind": "layernorm",
    "norm.bias": True,
    "norm.placement": "pre",
    "head.logit_scale": True,
    "block.num_layers": 4,
    "embedding.tied": False,
    # no rotary embedding (rule no_rope); the ALiBi bias is a feature (rule alibi)
    "attention.alibi": True,
    "unsupported": ["attention.logn_scale", "head.normalized"],
}


def folder(dest: Path) -> Path:
    return write_folder(
        dest,
        "alibi",
        "Alibi",
        MODELING,
        CONFIG,
        extra={
            "layer_norm_eps": 1e-5,
            "seq_length": 2048,
            "use_logn_attn": True,
            "logit_divisor": 1.0,
        },
    )
