"""Template variables for a model name: `{name}`, `{Name}`, `{model_type}`, `{arch}`, ...

Why: every framework spells a model differently (`qwen3_moe`, `Qwen3Moe`,
`Qwen3MoeForCausalLM`); the target data names the spelling and this derives it once.
Explicit values (`--arch`, `--class-prefix`, `--model-type`, `--set KEY=VALUE`) win over
the derived ones.
"""

from __future__ import annotations

import re

from codegen.errors import CodegenError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def camel(name: str) -> str:
    """The class-name prefix transformers derives from a model name.

    `qwen3_moe` -> `Qwen3Moe`, `deepseek_v3` -> `DeepseekV3`; an underscore between two
    digits is kept, as transformers writes it: `qwen3_5` -> `Qwen3_5`, `ernie4_5` ->
    `Ernie4_5`, `qwen3_5_moe` -> `Qwen3_5Moe`. (A few HF classes break even this rule,
    e.g. `Ernie4_5_Moe`; `--class-prefix` gives the exact spelling.)
    """
    parts = [part for part in re.split(r"[_\-]", name) if part]
    out = ""
    for part in parts:
        if out and out[-1].isdigit() and part[0].isdigit():
            out += "_"
        out += part[:1].upper() + part[1:]
    return out


def variables(name: str, **overrides: str | None) -> dict[str, str]:
    """The template variables for model `name`; `overrides` replace derived values.

    `class_prefix` replaces `{Name}` (and so the default `{arch}`); `arch` replaces
    `{arch}` only.
    """
    if not _NAME.match(name):
        raise CodegenError(
            f"bad model name {name!r}: use a lowercase Python identifier (e.g. qwen3_moe)"
        )
    prefix = overrides.pop("class_prefix", None) or camel(name)
    if not prefix.isidentifier():
        raise CodegenError(f"bad class prefix {prefix!r}: not a Python identifier")
    found = {"name": name, "Name": prefix, "model_type": name}
    found["arch"] = f"{prefix}ForCausalLM"
    found.update({k: v for k, v in overrides.items() if v})
    if not found["arch"].isidentifier():
        raise CodegenError(f"bad architecture class {found['arch']!r}: not a Python identifier")
    return found


class UnsetVariable(CodegenError):
    """A template needs a variable nobody set (`--set NAME=VALUE`)."""

    def __init__(self, name: str, template: str) -> None:
        super().__init__(f"target template {template!r} needs {{{name}}}: pass --set {name}=VALUE")
        self.name = name


def expand(template: str, values: dict[str, str]) -> str:
    try:
        return template.format(**values)
    except KeyError as err:
        raise UnsetVariable(err.args[0], template) from None
