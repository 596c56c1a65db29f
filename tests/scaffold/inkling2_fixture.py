"""Remote-code folders of transformers' inkling2 text decoder, renamed (`remote_fixture`),
with the parts a test does not cover taken out of the copy, so each test isolates its own.

Always taken out (the attention side and what is no part of the text decoder): the sliding
and full attentions become one plain causal attention (q, k, v, o projections, no position
signal), every layer is a sliding layer class run on the full causal mask, the residual
convolutions lose their output scale, the head its logit softcap and vocabulary crop, and
the vision tower is dropped. Kept: the MoE (router and experts), the block attention
residuals, the residual convolutions themselves, the embedding's norm.

`plain_residual` replaces the block attention residuals by a plain pre-norm residual
stream (no block states, no learned queries).

`plain_stack` is the part-removal the tests of single parts share: plain pre-norm residuals
in place of the block attention residuals and a plain SwiGLU MLP in place of the MoE."""

from __future__ import annotations

import re
from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "quillette"
LAYERS = 6

PLAIN_ATTENTION = """class \\1SlidingAttention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.q_proj = nn.Linear(config.hidden_size, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, hidden_states, attention_mask, conv_mask=None, past_key_values=None, **kw):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        if past_key_values is not None:
            cached = past_key_values.update(key_states, value_states, self.layer_idx)
            key_states, value_states = cached
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self, query_states, key_states, value_states, attention_mask, scaling=self.scaling, **kw
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output), attn_weights


class \\1FullAttention"""

PLAIN_LAYER = """\\1
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            conv_mask=conv_mask,
            past_key_values=past_key_values,
            **kwargs,
        )
        hidden_states = self.post_attention_convolution(
            hidden_states, past_key_values=past_key_values, conv_mask=conv_mask
        )
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        hidden_states = self.post_mlp_convolution(
            hidden_states, past_key_values=past_key_values, conv_mask=conv_mask
        )
        return residual + hidden_states


class \\2FullDecoderLayer"""


PLAIN_MLP = """class {p}PlainMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        width = config.moe_intermediate_size
        self.gate_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, width, bias=False)
        self.down_proj = nn.Linear(width, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


"""

PLAIN_STACK = [
    # plain pre-norm residuals in place of the block attention residuals
    (r"        self\.is_block_boundary = .*?\n        self\.mlp_input = .*?\n", ""),
    (
        r"        block_residual = hidden_states\n.*?\n\n(        hidden_states, _ = self)",
        r"        residual = hidden_states\n\n\1",
    ),
    (
        r"        residual = hidden_states = hidden_states\.float\(\)\n.*?mlp_input\(.*?\n",
        "        hidden_states = residual + hidden_states\n        residual = hidden_states\n",
    ),
    (
        r"            if decoder_layer\.is_block_boundary:\n.*?\n( +hidden_states = new_)",
        r"\1",
    ),
    (r"        hidden_states = self\.final_input\(.*?\n", ""),
    (r"        self\.final_input = .*?\n", ""),
    # a plain SwiGLU MLP in place of the MoE
    (r"self\.mlp = (\w+)SparseMoeBlock\(config\)", r"self.mlp = \1PlainMLP(config)"),
]


def plain_stack(source: str, count: int = 0, residuals: bool = True) -> str:
    """The modeling source with `PLAIN_STACK`'s edits (each on its first `count` matches;
    0: every match, both layer classes) and the `PlainMLP` class defined before the sliding
    decoder layer's; `residuals=False` keeps the block attention residuals (the MLP alone
    made plain)."""
    for pattern, replacement in PLAIN_STACK if residuals else PLAIN_STACK[-1:]:
        source, found = re.subn(pattern, replacement, source, count=count, flags=re.DOTALL)
        assert found, pattern  # the installed inkling2 changed: the fixture needs a look
    p = re.search(r"class (\w+)SlidingDecoderLayer\(", source).group(1)
    at = source.index(f"class {p}SlidingDecoderLayer(")
    return source[:at] + PLAIN_MLP.format(p=p) + source[at:]


def inkling2_folder(
    dest: Path, block: int = 3, plain_residual: bool = False, name: str = NAME
) -> Path:
    """The renamed inkling2 text folder (model type `name`), `block` layers to an
    attention-residual block."""
    folder = remote_folder(
        "inkling2_text",
        dest,
        name=name,
        config_values={
            "layer_types": ["hybrid_sliding"] * LAYERS,
            "n_layers_per_attn_res_block": block,
        },
    )
    path = folder / f"modeling_{name}.py"
    source = path.read_text()
    p = re.search(r"class (\w+)SlidingAttention\b", source).group(1)
    edits = [
        (
            rf"class ({p})SlidingAttention\(nn\.Module\):.*?\nclass {p}FullAttention",
            PLAIN_ATTENTION,
        ),
        (
            rf"{p}SlidingDecoderLayer\(config, layer_idx\)\n\s*if config\.layer_types\[layer_idx\]"
            rf" == \"hybrid_sliding\"\n\s*else {p}FullDecoderLayer\(config, layer_idx\)",
            f"{p}SlidingDecoderLayer(config, layer_idx)",
        ),
        (
            r"(class \w+SlidingDecoderLayer\(GradientCheckpointingLayer\):\n    attention_type = )"
            r"\"sliding_attention\"",
            r'\1"full_attention"',
        ),
        (
            r"        logits = self\.logit_softcap\(logits\)\n"
            r"        logits = logits\[\.\.\., : self\.config\.unpadded_vocab_size\]\n",
            "",
        ),
        (
            r"\(hidden_states \+ residual\) / math\.sqrt\(self\.conv_kernel_size \+ 1\)",
            "hidden_states + residual",
        ),
        # the vision tower
        (r"\nclass \w+VisionRotaryEmbedding\(.*?\n(class \w+PreTrainedModel\()", r"\n\1"),
        (r"        elif isinstance\(module, \w+VisionEmbeddings\):\n.*?(\n\n\nclass)", r"\1"),
        (r"\n@auto_docstring\nclass \w+VisionModel\(.*?\n(__all__ = \[)", r"\n\1"),
        (r'    "\w+VisionModel",\n    "\w+Model",\n    "\w+ForConditionalGeneration",\n', ""),
    ]
    if plain_residual:
        edits += [
            (
                r"        self\.attention_input = \w+\(config\) if layer_idx > 0 else None\n"
                r"        self\.mlp_input = \w+\(config\)\n",
                "",
            ),
            (
                r"(class \w+SlidingDecoderLayer\(.*?-> torch\.Tensor:)\n.*?\n\n\n"
                r"class (\w+)FullDecoderLayer",
                PLAIN_LAYER,
            ),
            (r"        hidden_states = self\.final_input\(block_states, \w+\)\[0\]\n", ""),
            (r"        self\.final_input = \w+\(config\)\n", ""),
        ]
    for pattern, replacement in edits:
        source, count = re.subn(pattern, replacement, source, flags=re.DOTALL)
        assert count, pattern  # the installed inkling2 changed: the fixture needs a look
    path.write_text(source)
    return folder


# the registration a remote folder makes for its own checkpoint layout: transformers'
# inkling2_text conversion of the experts' fused gate/up tensor, stored interleaved
INTERLEAVED_EXPERTS = """

register_checkpoint_conversion_mapping(
    "{name}",
    [
        WeightConverter(
            source_patterns=r"mlp\\.experts\\.w13_weight",
            target_patterns=r"mlp.experts.gate_up_proj",
            operations=[Interleave(dim=1)],
        ),
    ],
    overwrite=True,
)
"""


INTERLEAVED_NAME = "quillock"  # its own model type: the registration lasts the whole process


def interleaved_experts(folder: Path) -> Path:
    """The folder's modeling file registers the conversion transformers makes for
    inkling2_text's experts (`w13_weight`, gate and up rows interleaved, de-interleaved
    into `gate_up_proj` on load), so the checkpoint transformers saves stores them so.
    `folder` is built with `name=INTERLEAVED_NAME`: transformers keeps a registration for
    the process, so under the shared NAME it would reach every later inkling2 fixture."""
    path = folder / f"modeling_{INTERLEAVED_NAME}.py"
    source = path.read_text()
    imports = (
        "from transformers.conversion_mapping import register_checkpoint_conversion_mapping\n"
        "from transformers.core_model_loading import Interleave, WeightConverter\n"
    )
    at = source.index("\nimport ") + 1
    source = source[:at] + imports + source[at:] + INTERLEAVED_EXPERTS.format(name=INTERLEAVED_NAME)
    path.write_text(source)
    return folder
