"""A remote-code folder with DeepSeek-V4's attention parts on a plain decoder, built at test
time: the renamed llama copy (`codegen.verify.remote_fixture`) whose attention does what
DeepSeek-V4's does in its place:

* `rotation`: the output rotated by the query's rotary factors turned back (`-sin`) at the
  query's position before the output projection (transposed to the layout the rotary
  helper expects and back);
* `kv_same`: no value projection; the rotated keys are handed to the attention as the
  values too.

DeepSeek-V4 itself needs rules this one does not (compressors, hash routing, its latent
query and grouped output projection), so this is the target that isolates these parts."""

from __future__ import annotations

from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "quillfern"
PARTS = ("rotation", "kv_same")

ROTATED = (
    "        attn_output, _ = apply_rotary_pos_emb(\n"
    "            attn_output.transpose(1, 2), attn_output.transpose(1, 2), cos, -sin\n"
    "        )\n"
    "        attn_output = attn_output.transpose(1, 2)\n"
)
RESHAPE = "        attn_output = attn_output.reshape(*input_shape, -1).contiguous()\n"
V_PROJ = (
    "        self.v_proj = nn.Linear(\n"
    "            config.hidden_size, config.num_key_value_heads * self.head_dim,"
    " bias=config.attention_bias\n"
    "        )\n"
)
VALUES = "        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)\n"
ROTATE = (
    "        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)\n"
)


def v4_attention_folder(dest: Path, name: str = NAME, parts=PARTS) -> Path:
    folder = remote_folder("llama", dest, name=name)
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    edits = []
    if "rotation" in parts:
        edits.append((RESHAPE, ROTATED + RESHAPE))
    if "kv_same" in parts:
        edits += [
            (V_PROJ, ""),
            (VALUES, ""),
            (ROTATE, ROTATE + "        value_states = key_states\n"),
        ]
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    return folder
