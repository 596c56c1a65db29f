"""A remote-code folder with DeepSeek-V4's output rotation on a plain decoder, built at test
time: the renamed llama copy (`codegen.verify.remote_fixture`) whose attention, as
DeepSeek-V4's does, rotates its output by the query's rotary factors turned back (`-sin`) at
the query's position before the output projection (transposed to the layout the rotary
helper expects and back). DeepSeek-V4 itself needs rules this one does not (compressors,
hash routing, its latent query and grouped output projection), so this is the target that
isolates the output rotation."""

from __future__ import annotations

from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "quillfern"

ROTATED = (
    "        attn_output, _ = apply_rotary_pos_emb(\n"
    "            attn_output.transpose(1, 2), attn_output.transpose(1, 2), cos, -sin\n"
    "        )\n"
    "        attn_output = attn_output.transpose(1, 2)\n"
)


def rotated_folder(dest: Path, name: str = NAME) -> Path:
    folder = remote_folder("llama", dest, name=name)
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    reshape = "        attn_output = attn_output.reshape(*input_shape, -1).contiguous()\n"
    assert text.count(reshape) == 1
    path.write_text(text.replace(reshape, ROTATED + reshape))
    return folder
