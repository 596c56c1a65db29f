"""A remote-code folder whose layers rotate with RoPE parameters of their layer type AND a
RoPE base of their own, built at test time: the renamed copy of the installed granite_swa
(`remote_fixture`, one base per layer from a config list, 0: no RoPE) whose
`rope_parameters` are nested per layer type (as gemma3 / olmo3 nest them). The backbone
builds one rotary embedding per (layer type, nonzero base) pair the layers use, from the
type's parameters with the base swapped in, and hands each layer the table of its pair.
The list field is renamed too (`FIELD`), so nothing can lean on either name.
"""

from __future__ import annotations

import json
from pathlib import Path

from codegen.verify.remote_fixture import camel, neutral_name, remote_folder

SOURCE = "granite_swa"
NAME = neutral_name(SOURCE + "+rope_per_layer_type")
FIELD = "block_bases"  # the copy's name for the per-layer list of RoPE bases

# full layers turn at theta 1e6 unscaled, sliding ones at 1e4 with positions halved: a
# sliding and a full layer of the same base still turn differently
PARAMETERS = {
    "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
    "sliding_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
}
LAYER_TYPES = ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
# layers 0 and 1 share a base but not a type, layers 1 and 2 a type but not a base; layer 3
# applies no RoPE
BASES = [10000.0, 10000.0, 500000.0, 0]

# (old, new) text of the copy's configuration: rope_parameters nested per layer type by
# default, and each layer's base defaults to its type's
_CONFIG_EDITS = [
    (
        "        super().__post_init__(**kwargs)\n",
        "        if self.rope_parameters is None:\n"
        '            self.rope_parameters = {"full_attention": {}, "sliding_attention": {}}\n'
        "        super().__post_init__(**kwargs)\n",
    ),
    (
        '[self.rope_parameters["rope_theta"]] * self.num_hidden_layers',
        '[self.rope_parameters[t]["rope_theta"] for t in self.layer_types]',
    ),
]
# (old, new) text of the copy's modeling file: a rotary embedding per (type, base) pair
_MODELING_EDITS = [
    # no table at one global base: the parameters are nested, there is none
    (f"        self.rotary_emb = {camel(NAME)}RotaryEmbedding(config=config)\n", ""),
    (
        "        for theta in sorted({theta for theta in config.layer_rope_theta if theta}):\n"
        "            theta_config = copy.deepcopy(config)\n"
        "            theta_config.rope_parameters = "
        '{**config.rope_parameters, "rope_theta": theta}\n',
        "        self.rope_keys = sorted(\n"
        "            {(t, theta) for t, theta in zip(config.layer_types, config.layer_rope_theta)"
        " if theta}\n"
        "        )\n"
        "        for layer_type, theta in self.rope_keys:\n"
        "            theta_config = copy.deepcopy(config)\n"
        "            theta_config.rope_parameters = {\n"
        '                **config.rope_parameters[layer_type], "rope_theta": theta\n'
        "            }\n",
    ),
    (
        "        position_embeddings_by_theta = {\n"
        '            rotary_emb.config.rope_parameters["rope_theta"]: rotary_emb(hidden_states,'
        " position_ids=position_ids)\n"
        "            for rotary_emb in self.rotary_embs\n"
        "        }\n",
        "        position_embeddings_by_theta = {\n"
        "            key: rotary_emb(hidden_states, position_ids=position_ids)\n"
        "            for key, rotary_emb in zip(self.rope_keys, self.rotary_embs)\n"
        "        }\n",
    ),
    (
        "position_embeddings_by_theta[theta] if theta else None",
        "position_embeddings_by_theta[(self.config.layer_types[i], theta)] if theta else None",
    ),
]


def typed_bases_folder(dest: Path, one_type: str | None = None) -> Path:
    """The copy at `dest/NAME`: nested PARAMETERS, LAYER_TYPES and BASES in config.json,
    the list field renamed to FIELD in its code and config. `one_type`: every layer's base
    is swapped into that type's parameters instead of its own type's."""
    folder = remote_folder(SOURCE, dest, name=NAME)
    (config_file,) = folder.glob("configuration_*.py")
    (modeling_file,) = folder.glob("modeling_*.py")
    original = _list_field(config_file.read_text())
    _edit(config_file, _CONFIG_EDITS)
    own_type = "config.rope_parameters[layer_type]"
    fixed = [(own_type, f'config.rope_parameters["{one_type}"]')] if one_type else []
    _edit(modeling_file, _MODELING_EDITS + fixed)
    config = json.loads((folder / "config.json").read_text())
    config.update(rope_parameters=PARAMETERS, layer_types=LAYER_TYPES, layer_rope_theta=BASES)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for path in [*folder.glob("*.py"), folder / "config.json"]:
        path.write_text(path.read_text().replace(original, FIELD))
    return folder


def _edit(path: Path, edits: list[tuple[str, str]]) -> None:
    """Each `old` once in `path`, replaced by `new` (a missing one: the installed file
    changed, and the fixture says so rather than test another model)."""
    text = path.read_text()
    for old, new in edits:
        if text.count(old) != 1:
            raise AssertionError(f"{path.name}: {old.strip()[:60]!r} found {text.count(old)}x")
        text = text.replace(old, new)
    path.write_text(text)


def _list_field(text: str) -> str:
    """The config's annotated `list[float | int] | None` field: the per-layer bases."""
    (line,) = [line for line in text.splitlines() if ": list[float | int] | None" in line]
    return line.split(":")[0].strip()
