"""A remote-code folder with ZAYA's embedding shift and scale and its fp32 residual stream,
built at test time: the renamed llama copy (`codegen.verify.remote_fixture`) whose backbone
computes `((x + bias) * scale).to(torch.float32)` from the embeddings before its layers (the
learned per-channel vectors of ZAYA's `input_hidden_states_bias` / `_scale`), and whose
norms read the stream cast to their weight's dtype, as ZAYA's model and decoder layer do.
ZAYA itself needs rules this one does not (its convolutional attention, its router), so
this is the target that isolates the two rules."""

from __future__ import annotations

from pathlib import Path

from codegen.verify.remote_fixture import remote_folder

NAME = "sorrel"
CAMEL = "Sorrel"


def _once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def stream_folder(dest: Path) -> Path:
    folder = remote_folder("llama", dest, name=NAME)
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    norm = f"        self.norm = {CAMEL}RMSNorm(config.hidden_size, eps=config.rms_norm_eps)\n"
    text = _once(
        text,
        norm,
        norm
        + "        self.input_hidden_states_scale = nn.Parameter(torch.ones(config.hidden_size))\n"
        + "        self.input_hidden_states_bias = nn.Parameter(torch.zeros(config.hidden_size))\n",
    )
    rope = (
        "        position_embeddings = self.rotary_emb(hidden_states, position_ids=position_ids)\n"
    )
    text = _once(
        text,
        rope,
        rope
        + "        hidden_states = (\n"
        + "            (hidden_states + self.input_hidden_states_bias)\n"
        + "            * self.input_hidden_states_scale\n"
        + "        ).to(torch.float32)\n",
    )
    for norm in ("norm", "input_layernorm", "post_attention_layernorm"):
        text = _once(
            text,
            f"hidden_states = self.{norm}(hidden_states)\n",
            f"hidden_states = self.{norm}(hidden_states.to(dtype=self.{norm}.weight.dtype))\n",
        )
    path.write_text(text)
    return folder
