"""A remote-code folder whose residual adds are learned affine maps, built at test time: the
renamed llama copy (`codegen.verify.remote_fixture`) with ZAYA's residual-scaling module
(copied from the installed source, renamed) in place of each of the layer's two residual
adds, as ZAYA's decoder layer calls it. ZAYA itself needs rules this one does not (its
convolutional attention, its router), so this is the target that isolates the affine
residual rule."""

from __future__ import annotations

import ast
from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "tallow"
CAMEL = "Tallow"
MODULES = ("post_attention_residual_scale", "post_mlp_residual_scale")


def _scaling_class() -> str:
    import transformers.models.zaya.modeling_zaya as zaya

    source = Path(zaya.__file__).read_text()
    lines = source.splitlines()
    (node,) = [
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.ClassDef) and n.name == "ZayaResidualScaling"
    ]
    return "\n".join(lines[node.lineno - 1 : node.end_lineno]).replace("Zaya", CAMEL)


def affine_folder(dest: Path) -> Path:
    folder = remote_folder("llama", dest, name=NAME)
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    layer = f"class {CAMEL}DecoderLayer("
    text = text.replace(layer, _scaling_class() + "\n\n\n" + layer, 1)
    norm = (
        "        self.post_attention_layernorm = "
        f"{CAMEL}RMSNorm(config.hidden_size, eps=config.rms_norm_eps)\n"
    )
    assert text.count(norm) == 1
    text = text.replace(
        norm,
        norm
        + "".join(
            f"        self.{module} = {CAMEL}ResidualScaling(config.hidden_size)\n"
            for module in MODULES
        ),
    )
    add = "        hidden_states = residual + hidden_states\n"
    assert text.count(add) == 2, text.count(add)
    for module in MODULES:
        text = text.replace(
            add, f"        hidden_states = self.{module}(hidden_states, residual)\n", 1
        )
    path.write_text(text)
    return folder
