"""Template variables for a model name: `{name}`, `{Name}`, `{model_type}`, `{arch}`.

Why: every framework spells a model differently (`qwen3_moe`, `Qwen3Moe`,
`Qwen3MoeForCausalLM`); the target data names the spelling and this derives it once.
Explicit values (`--arch`, `--model-type`) win over the derived ones.
"""

from __future__ import annotations

import re

from codegen.errors import CodegenError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def camel(name: str) -> str:
    """`qwen3_moe` -> `Qwen3Moe`, `deepseek_v3` -> `DeepseekV3`."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-]", name) if part)


def variables(name: str, **overrides: str | None) -> dict[str, str]:
    """The template variables for model `name`; `overrides` replace derived values."""
    if not _NAME.match(name):
        raise CodegenError(
            f"bad model name {name!r}: use a lowercase Python identifier (e.g. qwen3_moe)"
        )
    found = {"name": name, "Name": camel(name), "model_type": name}
    found["arch"] = f"{found['Name']}ForCausalLM"
    found.update({k: v for k, v in overrides.items() if v})
    return found


def expand(template: str, values: dict[str, str]) -> str:
    try:
        return template.format(**values)
    except KeyError as err:
        raise CodegenError(f"target template {template!r} uses unknown variable {err}") from None
