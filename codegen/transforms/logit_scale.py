"""Scale the final logits by a config value (cohere `* logit_scale`, granite `/ logits_scaling`)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

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
    `features.evidence["head.logit_scale"]` points at. `unset` is the scale HF uses where
    the field is None (`config.f if config.f is not None else 1.0`); from the features it is
    read from the same source.
    """

    name = "logit_scale"

    def apply(
        self,
        package,
        features=None,
        *,
        field: str | None = None,
        op: str | None = None,
        unset: str | None = None,
    ):
        if field is None or op is None:
            op, field = detect(features)
            unset = unset_value(hf_source(features), field)
        if op not in _MEANING:
            raise ValueError(f"logit_scale op {op!r}: '*' or '/'")
        read = f"hf_config.{field}"
        add_args_field(
            package,
            field,
            f"float = 1.0  # output logits are {_MEANING[op]} this",
            read if unset is None else f"{read} if {read} is not None else {unset}",
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


def _config_field(field: str) -> m.Attribute:
    return m.Attribute(
        value=m.Name("config") | m.Attribute(attr=m.Name("config")), attr=m.Name(field)
    )


def unset_value(source: str, field: str) -> str | None:
    """The number HF uses where `field` is None: the `else` of
    `config.<field> if config.<field> is not None else <number>`, else None."""
    read = _config_field(field)
    pattern = m.IfExp(
        test=m.Comparison(
            left=read,
            comparisons=[m.ComparisonTarget(operator=m.IsNot(), comparator=m.Name("None"))],
        ),
        body=read,
        orelse=m.Integer() | m.Float(),
    )
    found = m.findall(cst.parse_module(source), pattern)
    return cst.Module([]).code_for_node(found[0].orelse) if found else None
