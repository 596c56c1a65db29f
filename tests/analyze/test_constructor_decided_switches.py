"""A config field tested only where a constructor parameter decides the test is no switch when
every call the model can make passes the parameter the same way: moshi's MLP builds one Linear
unless `use_flexible_linear`, then one per `config.num_codebooks`; its causal LM's layers never
pass True (only the depth decoder, which the causal LM does not build, does), so the field
selects nothing there. The parameter's values are the literals and defaults of the reachable
calls, passed on through a caller's own `__init__` parameter; when any reachable call passes
True, or the class is built another way (out of a table), the switch stays."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze
from codegen.verify.remote_fixture import neutral_name, remote_folder
from tests.analyze.idioms.common import write_folder

pytest.importorskip("transformers.models.moshi")


def _names(target: str) -> set[str]:
    return {s.name for s in analyze(target).switches}


def test_installed_moshi_has_no_codebook_switch() -> None:
    names = _names("moshi")
    assert "num_codebooks" not in names, sorted(names)
    assert {"head_dim", "rope_parameters.rope_type"} <= names  # the others stay


def test_renamed_moshi_has_no_codebook_switch(tmp_path) -> None:
    folder = remote_folder("moshi", tmp_path, name=neutral_name("moshi"))
    names = _names(str(folder))
    assert "num_codebooks" not in names, sorted(names)
    assert {"head_dim", "rope_parameters.rope_type"} <= names


# A small decoder of our own: the MLP's width count is `config.num_banks` only when the
# layer is built with `banked=True` (passed on from the model's call of the layer).
MODELING = """
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_gadwick import GadwickConfig


class GadwickNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class GadwickBank(nn.Module):
    def __init__(self, d_in, d_out, banks):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(banks, d_out, d_in))

    def forward(self, x):
        return torch.einsum("bti,noi->bto", x, self.weight)


class GadwickMLP(nn.Module):
    def __init__(self, config, banked=False):
        super().__init__()
        banks = config.num_banks if banked else 1
        if banks == 1:
            self.up = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        else:
            self.up = GadwickBank(config.hidden_size, config.intermediate_size, banks)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.up(x)))


class GadwickAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class GadwickLayer(nn.Module):
    def __init__(self, config, banked):
        super().__init__()
        self.self_attn = GadwickAttention(config)
        self.mlp = GadwickMLP(config, banked)
        self.input_layernorm = GadwickNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = GadwickNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class GadwickPreTrainedModel(PreTrainedModel):
    config_class = GadwickConfig
    base_model_prefix = "model"
    _can_record_outputs = {"hidden_states": GadwickLayer, "attentions": GadwickAttention}


class GadwickModel(GadwickPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            [LAYERS for i in range(config.num_hidden_layers)]
        )
        self.norm = GadwickNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def forward(self, input_ids):
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class GadwickForCausalLM(GadwickPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.model = GadwickModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return CausalLMOutputWithPast(logits=self.lm_head(self.model(input_ids)))
"""

EXTRA = {"num_banks": 4}
CONFIG = {
    "architectures": ["GadwickForCausalLM"],
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    **EXTRA,
}
# how the model's layers are built -> is num_banks a switch
LAYERS = {
    "never banked": ("GadwickLayer(config, banked=False)", False),
    "never banked, positionally": ("GadwickLayer(config, False)", False),
    "banked": ("GadwickLayer(config, banked=True)", True),
    "banked on odd layers": ("GadwickLayer(config, banked=i % 2 == 1)", True),
    "out of a table": ("{False: GadwickLayer}[False](config, False)", True),
}


@pytest.mark.parametrize("layers", list(LAYERS))
def test_a_field_only_a_constructor_parameter_lets_in(tmp_path, layers) -> None:
    built, switch = LAYERS[layers]
    modeling = MODELING.replace("LAYERS", built)
    folder = write_folder(tmp_path, "gadwick", "Gadwick", modeling, CONFIG, EXTRA)
    found = {s.name: s for s in analyze(str(folder)).switches}
    assert ("num_banks" in found) is switch, sorted(found)
    if switch:  # the test it rests on, with what each side builds
        values = {v.label: v.selects for v in found["num_banks"].values}
        assert "Linear" in values["1"] and "GadwickBank" in values["other"], values
