"""A remote-code folder with a prefix LM and chunked layers, built at test time: the renamed
hrm_text copy (`codegen.verify.remote_fixture`) whose config gains `attention_chunk_size`
and `layer_types` (every other layer chunked, llama4-style: one type per layer of a stack,
which its own validator checks in place of transformers' one per cache slot; the cache grows
its slots as the attention runs come), and whose backbone builds one mask per layer type,
both given the token types' `block_sequence_ids`: `create_causal_mask` for the full layers,
`create_chunked_causal_mask` for the chunked ones. The chunk (4) is shorter than verify's
long sequence and its short one, so a block cut at a chunk's edge shows."""

from __future__ import annotations

from pathlib import Path

from prefix_window_fixture import _edit

from codegen.verify.remote_fixture import remote_folder

NAME = "quorchet"
CHUNK = 4

CONFIGURATION = (
    (  # documented, else the config class logs an error among verify's JSON
        "        Instruction tokens attend bidirectionally, response tokens attend causally.\n",
        "        Instruction tokens attend bidirectionally, response tokens attend causally.\n"
        "    attention_chunk_size (`int`, *optional*):\n"
        "        A chunked layer's query sees only the keys of its chunk of this many tokens.\n",
    ),
    (
        "    prefix_lm: bool = True\n",
        "    prefix_lm: bool = True\n"
        f"    attention_chunk_size: int | None = {CHUNK}\n"
        "    layer_types: list[str] | None = None\n",
    ),
    (
        "        super().__post_init__(**kwargs)\n",
        "        if self.layer_types is None:\n"
        "            self.layer_types = [\n"
        '                "chunked_attention" if i % 2 == 0 else "full_attention"\n'
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
        "    create_chunked_causal_mask,\n"
        "    create_masks_for_generate,\n"
        ")",
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
        '            "chunked_attention": create_chunked_causal_mask(**mask_kwargs),\n'
        "        }\n",
    ),
)


def prefix_chunk_folder(dest: Path) -> Path:
    folder = remote_folder(
        "hrm_text", dest, name=NAME, config_values={"attention_chunk_size": CHUNK}
    )
    (configuration,) = folder.glob("configuration_*.py")
    (modeling,) = folder.glob("modeling_*.py")
    _edit(configuration, CONFIGURATION)
    _edit(modeling, MODELING)
    return folder
