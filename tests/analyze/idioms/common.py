"""Shared pieces of the idiom fixtures: a plain config class and the folder writer.

Each fixture module in this folder is our own remote-code style modeling file (no
third-party code) built around the idioms real hub checkpoints use and that the analyzer
must read right (issue 9). `write_folder` lays one out as a checkpoint folder would be:
`config.json` with `auto_map`, `configuration_<name>.py` and `modeling_<name>.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIGURATION = """
from transformers import PretrainedConfig


class {camel}Config(PretrainedConfig):
    model_type = "{name}"

    def __init__(
        self,
        vocab_size=32000,
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=4,
        num_attention_heads=16,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        rope_scaling=None,
        tie_word_embeddings=False,
{extra_args}        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
{extra_sets}        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
"""


def configuration(name: str, camel: str, extra: dict | None = None) -> str:
    """The configuration file; `extra` adds `__init__` arguments with their defaults."""
    extra = extra or {}
    args = "".join(f"        {k}={v!r},\n" for k, v in extra.items())
    sets = "".join(f"        self.{k} = {k}\n" for k in extra)
    return CONFIGURATION.format(name=name, camel=camel, extra_args=args, extra_sets=sets)


def write_folder(
    dest: Path,
    name: str,
    camel: str,
    modeling: str,
    config: dict,
    extra: dict | None = None,
    architectures: list[str] | None = None,
    causal_lm: str | None = None,
) -> Path:
    folder = Path(dest) / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"configuration_{name}.py").write_text(configuration(name, camel, extra).lstrip())
    (folder / f"modeling_{name}.py").write_text(modeling.lstrip())
    data = {
        "model_type": name,
        "auto_map": {
            "AutoConfig": f"configuration_{name}.{camel}Config",
            "AutoModelForCausalLM": f"modeling_{name}.{causal_lm or camel + 'ForCausalLM'}",
        },
        **config,
    }
    if architectures is not None:
        data["architectures"] = architectures
    (folder / "config.json").write_text(json.dumps(data, indent=2))
    return folder
