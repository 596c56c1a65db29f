"""gemma3n's text decoder as a renamed remote-code folder (`gemma3n_fixture`) with its Laurel
branch kept: each layer runs the low-rank branch (`linear_left`, `linear_right`, its own
norm, added to its input) on the attention's normed input and sums it with the attention's
residual output, the sum divided by sqrt(2). AltUp and the per-layer inputs stay out.

The branch's rank is the model width here (`laurel_rank` = `hidden_size`): its two
projections then have one shape, so a package that swaps them loads and only the values
show the slip."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gemma3n_fixture import NAME, derive

LAYER = """class SparrowDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: SparrowConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.layer_idx = layer_idx
        self.self_attn = SparrowAttention(config, layer_idx)
        self.mlp = SparrowMLP(config, layer_idx=layer_idx)
        eps = config.rms_norm_eps
        self.input_layernorm = SparrowWrapperRMSNorm(self.hidden_size, eps=eps)
        self.post_attention_layernorm = SparrowWrapperRMSNorm(self.hidden_size, eps=eps)
        self.pre_feedforward_layernorm = SparrowWrapperRMSNorm(self.hidden_size, eps=eps)
        self.post_feedforward_layernorm = SparrowWrapperRMSNorm(self.hidden_size, eps=eps)
        self.laurel = SparrowLaurelBlock(config)

    def forward(
        self,
        hidden_states,
        position_embeddings=None,
        shared_kv_states=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        **kwargs,
    ):
        normed = self.input_layernorm(hidden_states)
        laurel_output = self.laurel(normed)
        attn, _ = self.self_attn(
            hidden_states=normed,
            attention_mask=attention_mask,
            shared_kv_states=shared_kv_states,
            position_ids=position_ids,
            position_embeddings=position_embeddings,
            past_key_values=past_key_values,
            **kwargs,
        )
        attn = self.post_attention_layernorm(attn)
        attn_gated = hidden_states + attn
        attn_laurel = (attn_gated + laurel_output) / math.sqrt(2)
        ffw = self.mlp(self.pre_feedforward_layernorm(attn_laurel))
        return attn_laurel + self.post_feedforward_layernorm(ffw)


"""

__all__ = ["NAME", "derive_with_laurel"]


def derive_with_laurel(dest: Path) -> Path:
    folder = derive(dest)
    path = folder / f"modeling_{NAME}.py"
    source, count = re.subn(
        r"class SparrowDecoderLayer\(GradientCheckpointingLayer\):.*?(?=@auto_docstring)",
        lambda _: LAYER,
        path.read_text(),
        count=1,
        flags=re.DOTALL,
    )
    assert count  # the base fixture's layer changed: this one needs a look
    path.write_text(source)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["laurel_rank"] = config["hidden_size"]
    config_path.write_text(json.dumps(config, indent=2))
    return folder
