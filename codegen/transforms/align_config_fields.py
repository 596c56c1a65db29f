"""Make `from_hf_config` read fields the target's config class has, and FIXED_SETTINGS agree."""

from __future__ import annotations

import json
import re

import libcst as cst

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, expression, run

# FIXED_SETTINGS entries that follow the target config (the transforms realised the
# feature from the same config value); others, like hidden_act, must already agree.
_ADOPTED = ("attention_bias", "mlp_bias")


class AlignConfigFields(Transform):
    """A config read the target lacks becomes its alias (`rules/names.py`) or its fallback;
    FIXED_SETTINGS drops fields the target config does not have and adopts its biases."""

    name = "align_config_fields"

    def apply(self, package, features=None, *, fields: list[str], config: dict) -> None:
        from codegen.scaffold.table import load_names

        names = load_names()
        available = set(fields)
        replacements = {}
        for read in sorted(_config_reads(package.files["args.py"])):
            if read in available:
                continue
            alias = next((a for a in names.CONFIG_ALIASES.get(read, ()) if a in available), None)
            known = _feature_value(features, names.CONFIG_FROM_FEATURES.get(read))
            if alias is not None:
                replacements[read] = f"hf_config.{alias}"
            elif known is not None:
                replacements[read] = repr(known)
            elif read in names.CONFIG_FALLBACKS:
                replacements[read] = names.CONFIG_FALLBACKS[read]
        replacements = {read: _resolve(expr, replacements) for read, expr in replacements.items()}
        if replacements:
            package.edit("args.py", _Replace(replacements))
        if "FIXED_SETTINGS" in package.files["args.py"].code:
            run(
                package, "args.py", EditDict("FIXED_SETTINGS", _settings_rewrite(available, config))
            )


def _feature_value(features, path: str | None):
    """A plain bool/number the analysis found for `path`, else None."""
    if features is None or path is None:
        return None
    value = features.get(path)
    return value if isinstance(value, bool | int | float) else None


def _resolve(expression_text: str, replacements: dict[str, str]) -> str:
    """Apply the replacements inside a fallback expression too (one level is enough)."""

    def substitute(match: re.Match) -> str:
        return f"({replacements[match.group(1)]})" if match.group(1) in replacements else match[0]

    return re.sub(r"hf_config\.(\w+)", substitute, expression_text)


def _settings_rewrite(available: set[str], config: dict):
    def rewrite(key: str, value: str):
        field = json.loads(key)
        if field not in available:
            return []
        if field in _ADOPTED and field in config:
            return [(key, repr(config[field]))]
        return [(key, value)]

    return rewrite


class _Reads(cst.CSTVisitor):
    def __init__(self):
        self.names: set[str] = set()

    def visit_Attribute(self, node):
        if isinstance(node.value, cst.Name) and node.value.value == "hf_config":
            self.names.add(node.attr.value)

    def visit_Call(self, node):
        # getattr(hf_config, "head_dim", None) is an optional read: not required
        return True


def _config_reads(module: cst.Module) -> set[str]:
    visitor = _Reads()
    module.visit(visitor)
    return visitor.names


class _Replace(cst.CSTTransformer):
    def __init__(self, replacements: dict[str, str]):
        super().__init__()
        self.replacements = {k: expression(v) for k, v in replacements.items()}

    def leave_Attribute(self, original, updated):
        if (
            isinstance(updated.value, cst.Name)
            and updated.value.value == "hf_config"
            and updated.attr.value in self.replacements
        ):
            return self.replacements[updated.attr.value]
        return updated
