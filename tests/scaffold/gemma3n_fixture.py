"""gemma3n's text decoder as a renamed remote-code folder with its layer extras taken out of
the copy: AltUp (the four residual streams, their predict/correct steps and the
embedding/unembedding projections), the Laurel branch and the per-layer inputs (which gemma3n
adds to AltUp's other streams). What stays is gemma3n's own: its attention (q/k norms, a value
norm without weight, scale 1, sliding and full layers, the last layers reusing an earlier
layer's keys and values) and its MLP (GeGLU with the Gaussian top-k activation sparsity on
the first layers), in sandwich-normed blocks. `derive(altup=True)` keeps AltUp (the per-layer
inputs and Laurel still out); `derive(per_layer=True)` takes out Laurel alone;
`derive(laurel=True)` keeps Laurel alone (AltUp and the per-layer inputs out): each layer runs
the low-rank branch (`linear_left`, `linear_right`, its own norm, added to its input) on the
attention's normed input and sums it with the attention's residual output, the sum divided
by sqrt(2). The branch's rank is the model width there (`laurel_rank` = `hidden_size`): its
two projections then have one shape, so a package that swaps them loads and only the values
show the slip."""

from __future__ import annotations

import json
import re
from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "sparrow"

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
        attn, _ = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            shared_kv_states=shared_kv_states,
            position_ids=position_ids,
            position_embeddings=position_embeddings,
            past_key_values=past_key_values,
            **kwargs,
        )
        hidden_states = hidden_states + self.post_attention_layernorm(attn)
        ffw = self.mlp(self.pre_feedforward_layernorm(hidden_states))
        return hidden_states + self.post_feedforward_layernorm(ffw)


"""

# the same layer run on AltUp's active prediction and returning the corrected streams
ALTUP_LAYER = (
    LAYER.replace(
        "eps=eps)\n\n    def forward(",
        "eps=eps)\n        self.altup = SparrowAltUp(config)\n\n    def forward(",
    )
    .replace(
        "        attn, _ = self.self_attn(\n"
        "            hidden_states=self.input_layernorm(hidden_states),\n",
        "        predictions = self.altup.predict(hidden_states)\n"
        "        hidden_states = predictions[self.config.altup_active_idx]\n"
        "        attn, _ = self.self_attn(\n"
        "            hidden_states=self.input_layernorm(hidden_states),\n",
    )
    .replace(
        "        return hidden_states + self.post_feedforward_layernorm(ffw)\n",
        "        out = hidden_states + self.post_feedforward_layernorm(ffw)\n"
        "        return self.altup.correct(predictions, out)\n",
    )
)


# the same layer with the Laurel branch beside the attention, the two sums averaged by sqrt(2)
LAUREL_LAYER = (
    LAYER.replace(
        "eps=eps)\n\n    def forward(",
        "eps=eps)\n        self.laurel = SparrowLaurelBlock(config)\n\n    def forward(",
    )
    .replace(
        "        attn, _ = self.self_attn(\n"
        "            hidden_states=self.input_layernorm(hidden_states),\n",
        "        normed = self.input_layernorm(hidden_states)\n"
        "        laurel_output = self.laurel(normed)\n"
        "        attn, _ = self.self_attn(\n"
        "            hidden_states=normed,\n",
    )
    .replace(
        "        hidden_states = hidden_states + self.post_attention_layernorm(attn)\n"
        "        ffw = self.mlp(self.pre_feedforward_layernorm(hidden_states))\n"
        "        return hidden_states + self.post_feedforward_layernorm(ffw)\n",
        "        attn = self.post_attention_layernorm(attn)\n"
        "        attn_gated = hidden_states + attn\n"
        "        attn_laurel = (attn_gated + laurel_output) / math.sqrt(2)\n"
        "        ffw = self.mlp(self.pre_feedforward_layernorm(attn_laurel))\n"
        "        return attn_laurel + self.post_feedforward_layernorm(ffw)\n",
    )
)

# gemma3n's own layer less its Laurel branch: AltUp and the per-layer inputs kept
NO_LAUREL = [
    (r"        self\.laurel = SparrowLaurelBlock\(config\)\n", ""),
    (r"        laurel_output = self\.laurel\(active_prediction_normed\)\n", ""),
    (
        r"attn_laurel = \(attn_gated \+ laurel_output\) / math\.sqrt\(2\)",
        "attn_laurel = attn_gated",
    ),
]


def derive(
    dest: Path, *, altup: bool = False, per_layer: bool = False, laurel: bool = False
) -> Path:
    """The folder at `dest`; `altup`: AltUp kept (its streams, predictions and corrections);
    `per_layer`: the per-layer inputs kept too (Laurel alone taken out); `laurel`: Laurel
    kept alone, its rank the model width."""
    folder = remote_folder("gemma3n_text", dest, name=NAME)
    path = folder / f"modeling_{NAME}.py"
    source = path.read_text()
    if per_layer:
        path.write_text(_edited(source, NO_LAUREL))
        return folder
    edits = [
        # the decoder layer: attention and MLP in sandwich norms, nothing else
        (
            r"class SparrowDecoderLayer\(GradientCheckpointingLayer\):.*?(?=@auto_docstring)",
            ALTUP_LAYER if altup else LAUREL_LAYER if laurel else LAYER,
        ),
        # the model: no per-layer tables (and no AltUp projections unless kept)
        (
            r"\n        self\.hidden_size_per_layer_input = config\.hidden_size_per_layer_input\n"
            + (
                r".*?self\.per_layer_projection_norm = .*?\n(?=\n)"
                if altup
                else r".*?self\.per_layer_input_scale = nn\.Buffer\(.*?\)\n"
            ),
            "\n",
        ),
        (
            r"            init\.constant_\(module\.per_layer_projection_scale.*?\n"
            r"            init\.constant_\(module\.per_layer_input_scale.*?\n",
            "            pass\n",
        ),
        (
            r"            per_layer_inputs = self\.get_per_layer_inputs\(input_ids\)\n\n"
            r"        per_layer_inputs = "
            r"self\.project_per_layer_inputs\(inputs_embeds, per_layer_inputs\)\n",
            "",
        ),
    ]
    streams = [
        # one stream in, one out
        (
            r"        # embed positions\n        hidden_states_0 = inputs_embeds\n.*?"
            r"hidden_states = torch\.stack\(temp_hidden_states, dim=0\).*?\n",
            "        hidden_states = inputs_embeds\n",
        ),
    ]
    buffers = (
        r"        self\.per_layer_projection_scale = .*?\n.*?per_layer_input_scale = .*?\n",
        "",
    )
    per_layer = [
        *([buffers] if altup else []),
        (r"            per_layer_input = per_layer_inputs\[:, :, i, :\]\n", ""),
        (r"                per_layer_input,\n", ""),
    ]
    streams += [
        (
            r"        # Per-layer inputs to single output\n.*?"
            r"hidden_states = torch\.mean\(hidden_states, dim=0\)\n",
            "",
        ),
    ]
    path.write_text(_edited(source, edits + per_layer + ([] if altup else streams)))
    if laurel:
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        config["laurel_rank"] = config["hidden_size"]
        config_path.write_text(json.dumps(config, indent=2))
    return folder


def _edited(source: str, edits: list[tuple[str, str]]) -> str:
    for pattern, replacement in edits:
        source, count = re.subn(
            pattern, lambda _, new=replacement: new, source, count=1, flags=re.DOTALL
        )
        assert count, pattern  # the installed gemma3n changed: the fixture needs a look
    return source
