"""A remote-code folder with a prefix LM and sliding layers, built at test time: the renamed
hrm_text copy (`codegen.verify.remote_fixture`) whose config gains `sliding_window` and
`layer_types` (every other layer sliding: one type per layer of a stack, which its own
validator checks in place of transformers' one per cache slot; the cache grows its slots as
the attention runs come), whose attention hands its window to the kernel, and whose
backbone builds one mask per layer type, both given the token types' `block_sequence_ids`:
`create_causal_mask` for the full layers, `create_sliding_window_causal_mask` for the
sliding ones. The window (5) is shorter than verify's long sequence and its short one, so a
block cut by the window shows."""

from __future__ import annotations

from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "quorvel"
WINDOW = 5

CONFIGURATION = (
    (
        "    prefix_lm: bool = True\n",
        "    prefix_lm: bool = True\n"
        f"    sliding_window: int | None = {WINDOW}\n"
        "    layer_types: list[str] | None = None\n",
    ),
    (
        "        super().__post_init__(**kwargs)\n",
        "        if self.layer_types is None:\n"
        "            self.layer_types = [\n"
        '                "sliding_attention" if i % 2 == 0 else "full_attention"\n'
        "                for i in range(self.num_layers_per_stack)\n"
        "            ]\n"
        "        super().__post_init__(**kwargs)\n"
        "\n"
        "    def validate_layer_type(self):\n"
        '        """One layer type per layer of a stack (not per cache slot)."""\n'
        "        if len(self.layer_types) != self.num_layers_per_stack:\n"
        '            raise ValueError("one layer type per layer of a stack")\n',
    ),
)

MODELING = (
    (
        "from transformers.masking_utils import create_causal_mask, create_masks_for_generate",
        "from transformers.masking_utils import (\n"
        "    create_causal_mask,\n"
        "    create_masks_for_generate,\n"
        "    create_sliding_window_causal_mask,\n"
        ")",
    ),
    (
        "        self.is_causal = True\n",
        "        self.is_causal = True\n"
        '        sliding = config.layer_types[layer_idx] == "sliding_attention"\n'
        "        self.sliding_window = config.sliding_window if sliding else None\n",
    ),
    (
        "            scaling=self.scaling,\n            **kwargs,",
        "            scaling=self.scaling,\n"
        "            sliding_window=self.sliding_window,\n"
        "            **kwargs,",
    ),
    (
        "(config=config, layer_idx=layer_idx)\n",
        "(config=config, layer_idx=layer_idx)\n"
        "        self.attention_type = config.layer_types[layer_idx]\n",
    ),
    (
        "                attention_mask=attention_mask,\n"
        "                past_key_values=past_key_values,\n"
        "                position_embeddings=position_embeddings,\n"
        "                cycle_offset=cycle_offset,",
        "                attention_mask=attention_mask[layer.attention_type],\n"
        "                past_key_values=past_key_values,\n"
        "                position_embeddings=position_embeddings,\n"
        "                cycle_offset=cycle_offset,",
    ),
    (  # a slot per attention run, grown as they come: the types are per stack layer
        "DynamicCache(config=self.config)",
        "DynamicCache()",
    ),
    (
        "        attention_mask = create_causal_mask(**mask_kwargs)\n",
        "        attention_mask = {\n"
        '            "full_attention": create_causal_mask(**mask_kwargs),\n'
        '            "sliding_attention": create_sliding_window_causal_mask(**mask_kwargs),\n'
        "        }\n",
    ),
)


def _edit(path: Path, edits) -> None:
    text = path.read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)


def prefix_window_folder(dest: Path) -> Path:
    folder = remote_folder("hrm_text", dest, name=NAME, config_values={"sliding_window": WINDOW})
    (configuration,) = folder.glob("configuration_*.py")
    (modeling,) = folder.glob("modeling_*.py")
    _edit(configuration, CONFIGURATION)
    _edit(modeling, MODELING)
    return folder
