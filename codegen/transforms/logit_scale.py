"""Scale the final logits by a config value (cohere `* logit_scale`, granite `/ logits_scaling`),
or the hidden states going into the head where HF scales those (MiniCPM3): scaling the head's
input costs one (batch, seq, dim) tensor, scaling its output a vocab-wide copy of the logits.

A head without a bias is linear, so logits HF scales are scaled on the head's input instead:
the same logits (exactly, for the power-of-two scales released checkpoints use: cohere's
0.0625, granite's 8 or 16; to rounding otherwise) without writing the logits twice, which at
a 32k vocabulary is a third of the forward's bytes and its peak memory."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._attention_edits import find_method
from codegen.transforms._hf_source import (
    evidence_line,
    hf_config_read,
    hf_source,
    scaled_operand_at,
)
from codegen.transforms._rope_edits import (
    add_args_field,
    operand,
    rewrite_expressions,
    rewrite_return,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, expression

_MEANING = {"*": "multiplied by", "/": "divided by"}


class LogitScale(Transform):
    """`Model.forward` returns `logits * args.<field>` (`op="*"`) or `logits / args.<field>`
    (`op="/"`), exactly as HF writes it (a division is not its reciprocal's product in
    floating point). `field` is the HF config field and the new ModelArgs field's name.

    Without params, op and field are read from the HF source line that
    `features.evidence["head.logit_scale"]` points at. `unset` is the scale HF uses where
    the field is None (`config.f if config.f is not None else 1.0`); from the features it is
    read from the same source.

    `on="input"` puts the scale on the head's input instead, `self.output(x / args.<field>)`,
    where HF scales the hidden states before the head (from `features.head.logit_scale_on`),
    and where HF scales the logits of a bias-free head returned as they are (`return
    self.output(x)`); a head with a bias, or logits transformed before they are returned
    (softcapped, cropped), keep the scale on the logits.
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
        on: str | None = None,
    ):
        if field is None or op is None:
            op, field = detect(features)
            unset = unset_value(hf_source(features), field)
        if on is None:
            on = getattr(getattr(features, "head", None), "logit_scale_on", "logits")
        if op not in _MEANING:
            raise ValueError(f"logit_scale op {op!r}: '*' or '/'")
        if on not in ("logits", "input"):
            raise ValueError(f"logit_scale on {on!r}: 'logits' or 'input'")
        read = f"hf_config.{field}"
        what = "output logits are" if on == "logits" else "the head's input is"
        add_args_field(
            package,
            field,
            f"float = 1.0  # {what} {_MEANING[op]} this",
            read if unset is None else f"{read} if {read} is not None else {unset}",
        )
        if on == "input" or _linear_head_returned(package):
            _scale_head_input(package, op, field)
            return
        rewrite_return(
            package,
            "Model",
            "forward",
            lambda logits: f"return {operand(logits)} {op} self.args.{field}",
        )


_HEAD_CALL = m.Call(
    func=m.Attribute(value=m.Name("self"), attr=m.Name("output")), args=[m.Arg(keyword=None)]
)


_HEAD_BUILT = m.Assign(
    targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("output")))],
    value=m.Call(),
)
_NO_BIAS = m.Arg(keyword=m.Name("bias"), value=m.Name("False"))


def _linear_head_returned(package) -> bool:
    """`Model.forward` returns the head's output as it is, and the head adds no bias."""
    module = package.module("model.py")
    init, forward = (
        find_method(module, "Model", "__init__"),
        find_method(module, "Model", "forward"),
    )
    if init is None or forward is None:
        return False
    built = m.findall(init, _HEAD_BUILT)
    if len(built) != 1 or not m.findall(built[0], _NO_BIAS):
        return False
    returned = [r.value for r in m.findall(forward, m.Return()) if r.value is not None]
    return bool(returned) and m.matches(returned[-1], _HEAD_CALL)


def _scale_head_input(package, op: str, field: str) -> None:
    """`self.output(x)` in `Model.forward` becomes `self.output(x <op> self.args.<field>)`."""

    def rewrite(node):
        if not m.matches(node, _HEAD_CALL):
            return None
        hidden = cst.Module([]).code_for_node(node.args[0].value)
        scaled = expression(f"{operand(hidden)} {op} self.args.{field}")
        return node.with_changes(args=[node.args[0].with_changes(value=scaled)])

    hits = rewrite_expressions(package, "model.py", "Model", "forward", rewrite)
    if hits != 1:
        raise EditError(f"Model.forward calls self.output {hits} times; expected once")


def detect(features) -> tuple[str, str]:
    found = scaled_operand_at(features, "head.logit_scale")
    field = hf_config_read(hf_source(features), found[1]) if found else None
    if field is None:
        line = evidence_line(features, "head.logit_scale")
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
