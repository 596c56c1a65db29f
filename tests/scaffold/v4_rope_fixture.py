"""A remote-code folder with DeepSeek-V4's RoPE on a plain decoder, built at test time: the
renamed llama copy (`codegen.verify.remote_fixture`) whose rotary parts are DeepSeek-V4's
(copied from the installed source, renamed):

* its config groups the rope parameters under labels that are not layer types, with a base
  of their own each (`GROUPS`: "near" at 1e4, "far" at 1.6e5, a quarter of each head
  rotated), and the rotary embedding builds a table per label (DeepSeek-V4's class);
* the model hands every layer the tables of both labels (a dict) and the attention picks
  "far" (`position_embeddings[self.rope_group]`, `self.rope_group` set in `__init__`); the
  flat `rope_parameters` transformers leaves beside the groups ("near"'s base) is not it;
  the pretrained class fills the tables as DeepSeek-V4's does (`_init_weights`);
* q and k are rotated one at a time by DeepSeek-V4's `apply_rotary_pos_emb`: the trailing
  rotary dims of each head turn (`[nope | rope]`), in adjacent pairs; with
  `rotation="halves"` the same slice turns by llama's `rotate_half` on `cat(freqs, freqs)`
  tables instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

from codegen.verify.remote_fixture import camel, remote_folder

NAME = "tallowmere"
GROUPS = {
    "near": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
    "far": {"rope_type": "default", "rope_theta": 160000.0, "partial_rotary_factor": 0.25},
}
PICK = "far"

INIT = "        self.layer_idx = layer_idx\n"
ROTATE = (
    "        cos, sin = position_embeddings\n"
    "        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)\n"
)
ROTATE_EACH = (
    "        cos, sin = position_embeddings[self.rope_group]\n"
    "        query_states = apply_rotary_pos_emb(query_states, cos, sin)\n"
    "        key_states = apply_rotary_pos_emb(key_states, cos, sin)\n"
)
TABLES = "        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)\n"
TABLES_PER_LABEL = (
    "        position_embeddings = {\n"
    + "".join(
        f'            "{label}": self.rotary_emb(hidden_states, position_ids=position_ids,'
        f' layer_type="{label}"),\n'
        for label in GROUPS
    )
    + "        }\n"
)
RECORDS = (
    "    _can_record_outputs = {{\n"
    '        "hidden_states": {camel}DecoderLayer,\n'
    '        "attentions": {camel}Attention,\n'
    "    }}\n"
)
# DeepSeek-V4's init of its per-label tables (its pretrained class's branch): loading fills
# non-persistent buffers through `_init_weights`, which llama's leaves to the base class
INIT_TABLES = """
    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, {camel}RotaryEmbedding):
            for layer_type in module.layer_types:
                inv_freq, _ = module.compute_default_rope_parameters(
                    module.config, layer_type=layer_type
                )
                getattr(module, f"{{layer_type}}_inv_freq").copy_(inv_freq)
                getattr(module, f"{{layer_type}}_original_inv_freq").copy_(inv_freq)
"""
PAIRS = "cos.repeat_interleave(2, dim=-1)"
HALVES = "torch.cat((cos, cos), dim=-1)"


def _span(source: str, name: str) -> tuple[int, int]:
    """First and last line (1-based) of the top-level def/class `name`, decorators included."""
    (node,) = [
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == name
    ]
    return min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno


def _v4(name: str, new_camel: str) -> str:
    import transformers.models.deepseek_v4.modeling_deepseek_v4 as dsv4

    source = Path(dsv4.__file__).read_text()
    first, last = _span(source, name)
    text = "\n".join(source.splitlines()[first - 1 : last])
    return text.replace("DeepseekV4", new_camel) + "\n"


def _replace(source: str, name: str, new: str) -> str:
    first, last = _span(source, name)
    lines = source.splitlines(keepends=True)
    return "".join(lines[: first - 1]) + new + "".join(lines[last:])


def v4_rope_folder(
    dest: Path, name: str = NAME, rotation: str = "pairs", pick: str = f'"{PICK}"'
) -> Path:
    """The folder at `dest/name`; `pick` is the expression the attention's `__init__` sets
    `self.rope_group` to (over `config` and `layer_idx`)."""
    folder = remote_folder("llama", dest, name=name, config_values={"rope_parameters": GROUPS})
    new_camel = camel(name)
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    rotary = _v4("DeepseekV4RotaryEmbedding", new_camel)
    text = _replace(text, f"{new_camel}RotaryEmbedding", rotary)
    apply = _v4("apply_rotary_pos_emb", new_camel)
    if rotation == "halves":
        assert apply.count(PAIRS) == 1 and apply.count(PAIRS.replace("cos", "sin")) == 1
        apply = apply.replace(PAIRS, HALVES).replace(
            PAIRS.replace("cos", "sin"), HALVES.replace("cos", "sin")
        )
    else:
        text = _replace(text, "rotate_half", _v4("rotate_half", new_camel))
    text = _replace(text, "apply_rotary_pos_emb", apply)
    records = RECORDS.format(camel=new_camel)
    edits = [
        (INIT, INIT + f"        self.rope_group = {pick}\n"),
        (ROTATE, ROTATE_EACH),
        (TABLES, TABLES_PER_LABEL),
        (records, records + INIT_TABLES.format(camel=new_camel)),
    ]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    return folder
