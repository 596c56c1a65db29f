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
from codegen.transforms.edits import EditError, expression

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
        field = field or detect(features)
        add_args_field(
            package,
            field,
            "float = 1.0  # sublayer outputs scaled by this before the residual add",
            f"hf_config.{field}",
        )
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


def detect(features) -> str:
    source = hf_source(features)
    match = _HF_SCALED_ADD.search(source)
    field = hf_config_read(source, match.group(1)) if match else None
    if field is None:
        raise EditError("no `residual + hidden_states * <config value>` in the HF source")
    return field
