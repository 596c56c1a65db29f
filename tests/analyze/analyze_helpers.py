"""Helpers shared by the analyze tests: renaming a model's files, writing synthetic models."""

from __future__ import annotations

import json
import os
import re
import textwrap

from codegen.analyze.locate import model_type_files


def camel_prefix(model_type: str, config_class: str) -> str:
    """`Qwen3Moe` from `Qwen3MoeConfig`."""
    return config_class[: -len("Config")] if config_class.endswith("Config") else config_class


def rename_model(model_type: str, new: str, dest: str) -> tuple[str, dict[str, str]]:
    """Copy an installed model's modeling and configuration files into `dest` under a new name.

    Every identifier and string carrying the model's name is rewritten: the class prefix
    (`Qwen3Moe` -> `Zorblax`), the snake name (`qwen3_moe` -> `zorblax`, in model_type strings,
    file names and `.configuration_x` imports) and the upper-case form. Returns the new
    modeling path and the old->new replacements (to map the results back).
    """
    modeling, configuration, config_class = model_type_files(model_type)
    folder = os.path.basename(os.path.dirname(modeling))
    old_camel = camel_prefix(model_type, config_class)
    new_camel = new[:1].upper() + new[1:]
    # longest first, so `Qwen3Moe` is rewritten before `Qwen3`
    replacements = {
        old_camel: new_camel,
        folder: new,
        model_type: new,
        folder.upper(): new.upper(),
    }
    pattern = re.compile(
        "|".join(re.escape(k) for k in sorted(replacements, key=len, reverse=True))
    )

    def rewrite(text: str) -> str:
        return pattern.sub(lambda m: replacements[m.group(0)], text)

    target = os.path.join(dest, new)
    os.makedirs(target, exist_ok=True)
    out_modeling = os.path.join(target, rewrite(os.path.basename(modeling)))
    with open(modeling, encoding="utf-8") as fh:
        source = fh.read()
    with open(out_modeling, "w", encoding="utf-8") as fh:
        fh.write(rewrite(source))
    if configuration:
        with open(configuration, encoding="utf-8") as fh:
            config_source = fh.read()
        out_config = os.path.join(target, rewrite(os.path.basename(configuration)))
        with open(out_config, "w", encoding="utf-8") as fh:
            fh.write(rewrite(config_source))
    return out_modeling, {v: k for k, v in replacements.items()}


def rename_field(modeling: str, old: str, new: str) -> None:
    """In a renamed copy (`rename_model`), rename the config field `old` to `new`: its reads
    `config.<old>` in the modeling file and its declaration `    <old>:` in the config class."""
    with open(modeling, encoding="utf-8") as fh:
        text = fh.read()
    with open(modeling, "w", encoding="utf-8") as fh:
        fh.write(re.sub(rf"\bconfig\.{old}\b", f"config.{new}", text))
    configuration = os.path.join(
        os.path.dirname(modeling), os.path.basename(modeling).replace("modeling_", "configuration_")
    )
    with open(configuration, encoding="utf-8") as fh:
        text = fh.read()
    with open(configuration, "w", encoding="utf-8") as fh:
        fh.write(re.sub(rf"(?m)^    {old}:", f"    {new}:", text))


def unrename(data, back: dict[str, str]):
    """Map names in a JSON-able structure back through `back` (new -> old)."""
    text = json.dumps(data, sort_keys=True)
    pattern = re.compile("|".join(re.escape(k) for k in sorted(back, key=len, reverse=True)))
    return json.loads(pattern.sub(lambda m: back[m.group(0)], text))


SYNTH_CONFIG = """
from transformers.configuration_utils import PreTrainedConfig


class SynthConfig(PreTrainedConfig):
    model_type = "synth"
    vocab_size: int = 128
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    rope_parameters: dict | None = None
"""


def synth_modeling(
    *, q_norm: bool, qkv_bias: bool, o_bias: bool, mlp_bias: bool, post_norm: bool
) -> str:
    """A small llama-like modeling file; each flag adds exactly one construct."""
    attn_norms = ""
    apply_q = "query = self.q_proj(hidden_states).view(shape).transpose(1, 2)"
    apply_k = "key = self.k_proj(hidden_states).view(shape).transpose(1, 2)"
    if q_norm:
        attn_norms = (
            "        self.q_norm = SynthRMSNorm(self.head_dim)\n"
            "        self.k_norm = SynthRMSNorm(self.head_dim)\n"
        )
        apply_q = "query = self.q_norm(self.q_proj(hidden_states).view(shape)).transpose(1, 2)"
        apply_k = "key = self.k_norm(self.k_proj(hidden_states).view(shape)).transpose(1, 2)"
    post_init = ""
    attn_out = "hidden_states = residual + hidden_states"
    mlp_out = "hidden_states = residual + hidden_states"
    if post_norm:
        post_init = (
            "        self.post_attn_norm = SynthRMSNorm(config.hidden_size)\n"
            "        self.post_mlp_norm = SynthRMSNorm(config.hidden_size)\n"
        )
        attn_out = "hidden_states = residual + self.post_attn_norm(hidden_states)"
        mlp_out = "hidden_states = residual + self.post_mlp_norm(hidden_states)"
    template = """
    import torch
    from torch import nn

    from transformers.activations import ACT2FN
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel

    from .configuration_synth import SynthConfig


    class SynthRMSNorm(nn.Module):
        def __init__(self, hidden_size, eps=1e-6):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(hidden_size))
            self.variance_epsilon = eps

        def forward(self, hidden_states):
            variance = hidden_states.pow(2).mean(-1, keepdim=True)
            hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
            return self.weight * hidden_states


    class SynthRotaryEmbedding(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.rope_type = config.rope_parameters["rope_type"]
            inv_freq, self.attention_scaling = self.compute_default_rope_parameters(config)
            self.inv_freq = nn.Buffer(inv_freq, persistent=False)

        @staticmethod
        def compute_default_rope_parameters(config):
            dim = config.head_dim
            inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
            return inv_freq, 1.0

        def forward(self, x, position_ids):
            freqs = position_ids[..., None].float() * self.inv_freq
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos(), emb.sin()


    def rotate_half(x):
        x1 = x[..., : x.shape[-1] // 2]
        x2 = x[..., x.shape[-1] // 2 :]
        return torch.cat((-x2, x1), dim=-1)


    def apply_rotary_pos_emb(q, k, cos, sin):
        return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


    def eager_attention_forward(module, query, key, value, attention_mask, scaling, **kwargs):
        weights = torch.softmax(torch.matmul(query, key.transpose(2, 3)) * scaling, dim=-1)
        return torch.matmul(weights, value).transpose(1, 2), weights


    class SynthAttention(nn.Module):
        def __init__(self, config, layer_idx):
            super().__init__()
            self.config = config
            self.head_dim = config.head_dim
            self.scaling = self.head_dim**-0.5
            h, q, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
            self.q_proj = nn.Linear(h, q * self.head_dim, bias=@qkv_bias@)
            self.k_proj = nn.Linear(h, kv * self.head_dim, bias=@qkv_bias@)
            self.v_proj = nn.Linear(h, kv * self.head_dim, bias=@qkv_bias@)
            self.o_proj = nn.Linear(q * self.head_dim, h, bias=@o_bias@)
    @attn_norms@
        def forward(self, hidden_states, position_embeddings, attention_mask=None, **kwargs):
            shape = (*hidden_states.shape[:-1], -1, self.head_dim)
            @apply_q@
            @apply_k@
            value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
            cos, sin = position_embeddings
            query, key = apply_rotary_pos_emb(query, key, cos, sin)
            interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
            out, weights = interface(self, query, key, value, attention_mask, scaling=self.scaling)
            return self.o_proj(out.reshape(*hidden_states.shape[:-1], -1)), weights


    class SynthMLP(nn.Module):
        def __init__(self, config):
            super().__init__()
            h, i = config.hidden_size, config.intermediate_size
            self.gate_proj = nn.Linear(h, i, bias=@mlp_bias@)
            self.up_proj = nn.Linear(h, i, bias=@mlp_bias@)
            self.down_proj = nn.Linear(i, h, bias=@mlp_bias@)
            self.act_fn = ACT2FN["silu"]

        def forward(self, x):
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


    class SynthDecoderLayer(nn.Module):
        def __init__(self, config, layer_idx):
            super().__init__()
            self.self_attn = SynthAttention(config, layer_idx)
            self.mlp = SynthMLP(config)
            self.input_layernorm = SynthRMSNorm(config.hidden_size)
            self.post_attention_layernorm = SynthRMSNorm(config.hidden_size)
    @post_init@
        def forward(self, hidden_states, position_embeddings=None, attention_mask=None, **kwargs):
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
            hidden_states, _ = self.self_attn(hidden_states, position_embeddings, attention_mask)
            @attn_out@
            residual = hidden_states
            hidden_states = self.post_attention_layernorm(hidden_states)
            hidden_states = self.mlp(hidden_states)
            @mlp_out@
            return hidden_states


    class SynthPreTrainedModel(PreTrainedModel):
        config: SynthConfig


    class SynthModel(SynthPreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
            self.layers = nn.ModuleList(
                [SynthDecoderLayer(config, i) for i in range(config.num_hidden_layers)]
            )
            self.norm = SynthRMSNorm(config.hidden_size)
            self.rotary_emb = SynthRotaryEmbedding(config)

        def forward(self, input_ids, position_ids=None, **kwargs):
            hidden_states = self.embed_tokens(input_ids)
            position_embeddings = self.rotary_emb(hidden_states, position_ids)
            for layer in self.layers:
                hidden_states = layer(hidden_states, position_embeddings)
            return self.norm(hidden_states)


    class SynthForCausalLM(SynthPreTrainedModel):
        _tied_weights_keys = {{"lm_head.weight": "model.embed_tokens.weight"}}

        def __init__(self, config):
            super().__init__(config)
            self.model = SynthModel(config)
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

        def forward(self, input_ids, **kwargs):
            return self.lm_head(self.model(input_ids))
    """
    source = textwrap.dedent(template).replace("{{", "{").replace("}}", "}")
    values = {
        "@qkv_bias@": str(qkv_bias),
        "@o_bias@": str(o_bias),
        "@mlp_bias@": str(mlp_bias),
        "@apply_q@": apply_q,
        "@apply_k@": apply_k,
        "@attn_out@": attn_out,
        "@mlp_out@": mlp_out,
    }
    for key, value in values.items():
        source = source.replace(key, value)
    source = source.replace("@attn_norms@\n", attn_norms)
    return source.replace("@post_init@\n", post_init)


def write_synth(folder: str, **flags) -> str:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "configuration_synth.py"), "w", encoding="utf-8") as fh:
        fh.write(SYNTH_CONFIG)
    path = os.path.join(folder, "modeling_synth.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(synth_modeling(**flags))
    return path
