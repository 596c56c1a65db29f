"""Scale the final logits by a config value (cohere `* logit_scale`, granite `/ logits_scaling`)."""

from __future__ import annotations

from codegen.transforms._rope_edits import (
    add_args_field,
    evidence_line,
    hf_config_read,
    hf_source,
    operand,
    rewrite_return,
    scaled_operand,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError

_MEANING = {"*": "multiplied by", "/": "divided by"}


class LogitScale(Transform):
    """`Model.forward` returns `logits * args.<field>` (`op="*"`) or `logits / args.<field>`
    (`op="/"`), exactly as HF writes it (a division is not its reciprocal's product in
    floating point). `field` is the HF config field and the new ModelArgs field's name.

    Without params, op and field are read from the HF source line that
    `features.evidence["head.logit_scale"]` points at.
    """

    name = "logit_scale"

    def apply(self, package, features=None, *, field: str | None = None, op: str | None = None):
        if field is None or op is None:
            op, field = detect(features)
        if op not in _MEANING:
            raise ValueError(f"logit_scale op {op!r}: '*' or '/'")
        add_args_field(
            package,
            field,
            f"float = 1.0  # output logits are {_MEANING[op]} this",
            f"hf_config.{field}",
        )
        rewrite_return(
            package,
            "Model",
            "forward",
            lambda logits: f"return {operand(logits)} {op} self.args.{field}",
        )


def detect(features) -> tuple[str, str]:
    line = evidence_line(features, "head.logit_scale")
    found = scaled_operand(line)
    field = hf_config_read(hf_source(features), found[1]) if found else None
    if field is None:
        raise EditError(f"cannot tell how the logits are scaled from {line!r}")
    return found[0], field
