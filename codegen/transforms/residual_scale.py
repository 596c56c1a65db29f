"""Scale each sublayer's output before its residual add (granite `residual_multiplier`)."""

from __future__ import annotations

import re

import libcst as cst

from codegen.transforms._rope_edits import (
    add_args_field,
    hf_config_read,
    hf_source,
    insert_after,
    is_super_init,
    rewrite_expressions,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, add_import, expression

# HF granite: `hidden_states = residual + hidden_states * self.residual_multiplier`
_HF_SCALED_ADD = re.compile(r"residual\s*\+\s*hidden_states\s*\*\s*((?:self|config)(?:\.\w+)+)")


class ResidualScale(Transform):
    """Every `residual + sublayer(...)` in `TransformerBlock.forward` becomes
    `residual + sublayer(...) * self.<field>`, the block reading the ModelArgs field `field`
    (named as the HF config field, granite "residual_multiplier").

    Without `field` it is read from the HF source's `residual + hidden_states * <x>`.
    """

    name = "residual_scale"

    def apply(self, package, features=None, *, field: str | None = None) -> None:
        field, value = (field, f"hf_config.{field}") if field else detect(features)
        add_args_field(
            package,
            field,
            "float = 1.0  # sublayer outputs scaled by this before the residual add",
            value,
        )
        if "sqrt(" in value:
            add_import(package, "args.py", "math", "sqrt")
        insert_after(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            is_super_init,
            f"self.{field} = args.{field}",
        )
        scale = expression(f"self.{field}")

        def rewrite(node):
            if not (
                isinstance(node, cst.BinaryOperation)
                and isinstance(node.operator, cst.Add)
                and isinstance(node.left, cst.Name)
                and isinstance(node.right, cst.Call)
            ):
                return None
            scaled = cst.BinaryOperation(node.right, cst.Multiply(), scale)
            return node.with_changes(right=scaled)

        rewrite_expressions(package, "model.py", "TransformerBlock", "forward", rewrite)


def detect(features) -> tuple[str, str]:
    """(ModelArgs field, its `from_hf_config` value): a config field read as is, or the
    expression over config fields HF assigns the multiplier from (MiniCPM3's
    `self.residual_scale = config.scale_depth / math.sqrt(config.num_hidden_layers)`)."""
    source = hf_source(features)
    match = _HF_SCALED_ADD.search(source)
    attr = re.fullmatch(r"self\.(\w+)", match.group(1)) if match else None
    assigned = (
        re.search(rf"self\.{attr.group(1)}\s*=\s*(.+?)\s*$", source, re.MULTILINE) if attr else None
    )
    # `self.x = config.field` as a whole (not the first operand of a longer expression)
    whole = assigned is None or re.fullmatch(r"(?:self\.)?config\.\w+", assigned.group(1))
    field = hf_config_read(source, match.group(1)) if match and whole else None
    if field is not None:
        return field, f"hf_config.{field}"
    if assigned:
        value = re.sub(r"\b(?:self\.)?config\.", "hf_config.", assigned.group(1))
        value = re.sub(r"\bmath\.sqrt\(", "sqrt(", value)
        if _over_config(value):
            return attr.group(1), value
    raise EditError("no `residual + hidden_states * <config value>` in the HF source")


def _over_config(value: str) -> bool:
    """`value` parses and reads only `hf_config.<field>`, numbers and `sqrt`."""
    import ast

    try:
        tree = ast.parse(value, mode="eval")
    except SyntaxError:
        return False
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return names <= {"hf_config", "sqrt"} and "hf_config" in names
