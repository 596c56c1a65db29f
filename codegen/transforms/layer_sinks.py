"""Attention sinks on some layers only, chosen by a condition over the config (MiMo-V2-Flash:
its sliding-window layers)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns, run

FIELD = """
# layers whose attention has sink logits (the others softmax their scores alone)
sink_layers: tuple[int, ...] = ()
"""
SINK_LAYERS = "tuple(i for i in range(hf_config.num_hidden_layers) if {rule})"

# the layers without sinks: the softmax of the scores alone, shifted by their maximum where
# the sink layers' logits are (HF's eager attention shifts on every layer), else as they are
PLAIN_SHIFTED = """
scores = scores - scores.amax(dim=-1, keepdim=True)  # as HF: no overflow in bf16
probs = torch.softmax(scores, dim=-1).to(v.dtype)
"""
PLAIN = "probs = torch.softmax(scores, dim=-1).to(v.dtype)"
# where the sink layers free their scores and logits after the softmax, the others free theirs
FREE_SCORES = "del scores  # not held while the values are weighed and projected"
_DEL = m.SimpleStatementLine(body=[m.Del()])

_SINKS = m.Attribute(value=m.Name("self"), attr=m.Name("sinks"))
_MINUS_MAX = m.BinaryOperation(
    operator=m.Subtract(), right=m.Call(func=m.Attribute(attr=m.Name("amax")))
)


class LayerSinks(Transform):
    """Only the layers in `args.sink_layers` have sink logits (`self.sinks` is None on the
    others), read in `from_hf_config` by the condition HF's `__init__` builds them under,
    restated over the config (`rule`: MiMo-V2-Flash's `hf_config.layer_types[i] ==
    "sliding_attention"`). Runs after `add_attention_sinks`: the softmax with the sink
    column is kept for those layers, the others softmax their scores alone (shifted by their
    maximum where the sink layers' logits are, as HF's one eager function does)."""

    name = "layer_sinks"

    def apply(self, package, features=None, *, rule: str | None = None) -> None:
        if not rule:
            raise ValueError("which layers have sinks: the source's condition was not restated")
        condition = edits.expression(rule)
        if m.matches(condition, m.IfExp() | m.Lambda()):  # a comprehension's `if` takes neither
            condition = condition.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        edits.add_args_field(
            package, FIELD, "sink_layers=" + SINK_LAYERS.format(rule=edits.code_of(condition))
        )
        layer_id = edits.ensure_attention_layer_id(package)
        run(package, "model.py", _SinksOnSomeLayers(layer_id))
        run(package, "model.py", _BranchSoftmax())


class _SinksOnSomeLayers(edits.InMethod):
    """`self.sinks = nn.Parameter(...)` -> `... if layer_id in args.sink_layers else None`
    (its trailing comment moved above it: the longer line wraps)."""

    def __init__(self, layer_id: str):
        super().__init__("Attention", "__init__")
        self.test = edits.expression(f"{layer_id} in args.sink_layers")

    def leave_SimpleStatementLine(self, original, updated):
        assign = updated.body[0] if updated.body else None
        if not (
            self.inside
            and isinstance(assign, cst.Assign)
            and m.matches(assign.targets[0].target, _SINKS)
        ):
            return updated
        if isinstance(assign.value, cst.IfExp):
            raise EditError("the sinks are already built under a condition")
        self.hits += 1
        value = cst.IfExp(test=self.test, body=assign.value, orelse=cst.Name("None"))
        return _comment_above(updated.with_changes(body=[assign.with_changes(value=value)]))


# the branch's statements sit three levels in (class, method, if)
_WIDTH = 100 - 12


def _fitting(statement):
    """A statement whose trailing comment would overflow the line inside the branch with
    that comment moved above it."""
    if not isinstance(statement, cst.SimpleStatementLine):
        return statement
    if len(edits.code_of(statement).strip()) <= _WIDTH:
        return statement
    return _comment_above(statement)


def _comment_above(statement: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
    """A trailing comment moved to its own line above the statement."""
    comment = statement.trailing_whitespace.comment
    if comment is None:
        return statement
    return statement.with_changes(
        leading_lines=[*statement.leading_lines, cst.EmptyLine(comment=comment)],
        trailing_whitespace=statement.trailing_whitespace.with_changes(
            comment=None, whitespace=cst.SimpleWhitespace("")
        ),
    )


class _BranchSoftmax(edits.InMethod):
    """The statements from the sink column through the softmax that drops it, under `if
    self.sinks is not None:`, the plain softmax under `else:`."""

    def __init__(self):
        super().__init__("Attention", "forward")

    def leave_FunctionDef(self, original, updated):
        hit = self.inside
        updated = super().leave_FunctionDef(original, updated)
        if not hit:
            return updated
        body = list(updated.body.body)
        reads = [i for i, s in enumerate(body) if m.findall(s, _SINKS)]
        ends = [i for i, s in enumerate(body) if assigns("probs", calling="torch.softmax")(s)]
        if not reads or not ends or ends[0] < reads[0]:
            raise EditError("no softmax with a sink column in Attention.forward")
        first, last = reads[0], ends[0]
        freed = last + 1 < len(body) and m.matches(body[last + 1], _DEL)
        if freed:  # the scores and logits freed after the softmax: in the branch that has both
            last += 1
        block = [_fitting(s) for s in body[first : last + 1]]
        plain = PLAIN_SHIFTED if any(m.findall(s, _MINUS_MAX) for s in block) else PLAIN
        plain = edits.statements(plain.strip() + (f"\n{FREE_SCORES}" if freed else ""))
        branch = cst.If(
            test=edits.expression("self.sinks is not None"),
            body=cst.IndentedBlock(body=block),
            orelse=cst.Else(body=cst.IndentedBlock(body=plain)),
        )
        self.hits += 1
        body[first : last + 1] = [branch]
        return updated.with_changes(body=updated.body.with_changes(body=body))
