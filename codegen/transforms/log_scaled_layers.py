"""The full-attention layers build an attention class of their own: the layers' attention
as every earlier rule made it, its queries and relative-position states multiplied by a
scale that grows with the log of the position (Inkling-2's full layers)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    run,
    statements,
)

CLASS = "LogScaledAttention"
DOC = (
    '"""The full-attention layers\' attention: as `Attention`, with its queries and'
    "\n    relative-position states multiplied (in fp32) by `log_scale`, 1 + alpha *"
    "\n    log(max((position + {offset}) / floor, 1)): one up to position `floor`, growing with"
    '\n    the log of the position after."""'
)
ALPHA = "float = 0.0  # full layers' queries times 1 + this * log(position / floor)"
FLOOR = "float = 1.0  # the position up to which that scale is 1"
SCALE = (
    "log_scale = 1.0 + self.args.log_scaling_alpha * torch.log("
    "({positions}.float() / self.args.log_scaling_floor).clamp(min=1.0))"
    "  # (batch, seq): the full layers' query scale"
)
Q_SCALED = "q = (q.float() * log_scale[:, None, :, None]).to(q.dtype)  # every head alike"
REL_SCALED = "({states}.float() * log_scale[:, :, None, None]).to(x.dtype)"
CHOICE = "self.attention = (Attention if self.sliding else {cls})(args, layer_id)"


class LogScaledLayers(Transform):
    """A second attention class, `LogScaledAttention` (a copy of `Attention` as the rules
    before made it), on the layers whose type is full attention; `Model.forward` computes
    `log_scale` = 1 + alpha * log(max((positions + offset) / floor, 1)) in fp32 and hands it
    to every block, which passes it to its attention on the full layers alone (the sliding
    layers' `Attention` takes none); the copy multiplies its queries (`scaled` holds "q")
    and the states of its relative position bias ("rel") by it, in fp32, cast back.
    `log_scaling`: the analysed `attention.layer_logn` ({"alpha", "floor": hf_config
    expressions, "offset", "scaled", "layers": "full"})."""

    name = "log_scaled_layers"

    def apply(self, package, features=None, *, log_scaling: dict | None = None):
        found = log_scaling or {}
        if not (found.get("alpha") and found.get("floor")):
            raise EditError("log-scaled layers need the config fields of alpha and floor")
        if found.get("layers") != "full":
            raise EditError(f"log-scaled layers {found.get('layers')!r}: full only")
        scaled = set(found.get("scaled") or ())
        if not scaled or scaled - {"q", "rel"}:
            raise EditError(f"log-scaled tensors {sorted(scaled)}: q and rel")
        offset = int(found.get("offset") or 0)
        if not edits.method_uses(package, "TransformerBlock", "__init__", "sliding"):
            raise EditError("log-scaled layers are picked by layer type: the block has no type")
        add_args_field(package, "log_scaling_alpha", ALPHA, found["alpha"])
        add_args_field(package, "log_scaling_floor", FLOOR, found["floor"])
        run(package, "model.py", _CopyClass("Attention", CLASS, DOC.format(offset=offset)))
        # the block picks its class by its layer type
        run(
            package,
            "model.py",
            ReplaceStatements(
                "TransformerBlock", "__init__", assigns("self.attention"), CHOICE.format(cls=CLASS)
            ),
        )
        # the scale: computed once, handed through every block to the full layers' attention
        positions = f"(positions + {offset})" if offset else "positions"
        run(
            package,
            "model.py",
            InsertStatements(
                "Model",
                "forward",
                edits.is_layer_loop,
                SCALE.format(positions=positions),
                before=True,
            ),
        )
        edits.add_param(package, CLASS, "forward", "log_scale: torch.Tensor")
        edits.hand_down(package, "log_scale: torch.Tensor", into=_scaled_on_full_layers)
        run(package, "model.py", edits.BareConditionalArgs(), required=False)
        if "q" in scaled:
            run(package, "model.py", InsertStatements(CLASS, "forward", _assigns_q, Q_SCALED))
        if "rel" in scaled:
            edits.replace_expressions(
                package,
                "model.py",
                CLASS,
                "forward",
                edits.call_of("self.rel_bias"),
                _scaled_states,
            )


def _scaled_on_full_layers(call: cst.Call) -> cst.IfExp:
    """`self.attention(h, ...)` -> `(self.attention(h, ...) if self.sliding else
    self.attention(h, ..., log_scale))`: the scale goes to the full layers' class alone."""
    return cst.IfExp(
        test=cst.parse_expression("self.sliding"),
        body=call,
        orelse=edits.with_arg(call, "log_scale"),
        lpar=[cst.LeftParen()],
        rpar=[cst.RightParen()],
    )


def _assigns_q(statement) -> bool:
    return assigns("q")(statement)


def _scaled_states(call: cst.Call) -> cst.Call:
    states = cst.Module([]).code_for_node(call.args[0].value)
    new = cst.parse_expression(REL_SCALED.format(states=states))
    return call.with_changes(args=[call.args[0].with_changes(value=new), *call.args[1:]])


class _CopyClass(cst.CSTTransformer):
    """Insert a copy of class `source` named `name`, with `doc` as its docstring, after it."""

    def __init__(self, source: str, name: str, doc: str):
        super().__init__()
        self.source, self.name, self.doc = source, name, doc
        self.hits = 0

    def leave_Module(self, original, updated):
        body = list(updated.body)
        for index, statement in enumerate(body):
            if isinstance(statement, cst.ClassDef) and statement.name.value == self.source:
                self.hits += 1
                inner = list(statement.body.body)
                if inner and _is_docstring(inner[0]):
                    inner = inner[1:]
                copy = statement.with_changes(
                    name=cst.Name(self.name),
                    body=statement.body.with_changes(body=[*statements(self.doc), *inner]),
                    leading_lines=[cst.EmptyLine(), cst.EmptyLine()],
                )
                body.insert(index + 1, copy)
                break
        return updated.with_changes(body=body)


def _is_docstring(statement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )
