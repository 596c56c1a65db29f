"""Skip RoPE on some layers (NoPE layers), chosen by the condition the source guards the
rotation with, restated over the config (`Features.rope.nope_rule`): smollm3's
`no_rope_layers[i]`, cohere2's sliding layers, exaone4's "no window, or a sliding layer"."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    InsertStatements,
    calls_super_init,
    code_of,
    is_name,
    run,
)

FIELD = "nope_layers: tuple[int, ...] = ()  # layers whose attention applies no RoPE (NoPE)"

# the NoPE layers: those where the source's condition for rotating does not hold
NOPE_LAYERS = "tuple(i for i in range(hf_config.num_hidden_layers) if not {rule})"

_ATOM = m.Name() | m.Attribute() | m.Call() | m.Subscript()

GUARD = "if rope is not None:  # None: a NoPE layer\n    pass"


class AddNopeLayers(Transform):
    """Layers listed in `args.nope_layers` attend without rotary embeddings: the block hands
    its attention `rope=None` and the attention then skips the rotation. `rope_rule` is the
    condition, over `hf_config` and the layer index `i`, under which the source rotates
    (`hf_config.no_rope_layers[i]` for smollm3); without one the plan cannot say which
    layers skip RoPE and stops."""

    name = "add_nope_layers"

    def apply(self, package, features=None, *, rope_rule: str | None = None) -> None:
        if not rope_rule:
            raise ValueError(
                "which layers skip RoPE: the source's condition around the rotation could not"
                " be restated over the config"
            )
        rule = edits.expression(rope_rule)
        if not m.matches(rule, _ATOM) and not rule.lpar:
            rule = rule.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        nope = NOPE_LAYERS.format(rule=code_of(rule))
        edits.add_args_field(package, FIELD, f"nope_layers={nope}")
        layer_id = edits.ensure_layer_id(package)
        run(
            package,
            "model.py",
            InsertStatements(
                "TransformerBlock",
                "__init__",
                calls_super_init,
                f"self.use_rope = {layer_id} not in args.nope_layers",
            ),
        )

        def rope_or_none(call: cst.Call) -> cst.Call:
            args = [
                a.with_changes(value=edits.expression("rope if self.use_rope else None"))
                if is_name(a.value, "rope")
                else a
                for a in call.args
            ]
            return call.with_changes(args=args)

        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "forward",
            edits.call_of("self.attention"),
            rope_or_none,
        )
        rotate_only_with_table(package)


OPTIONAL_TABLE = "tuple[torch.Tensor, torch.Tensor] | None"


def rotate_only_with_table(package, *, block: bool = False) -> None:
    """The attention takes `rope=None` for a NoPE layer and then skips the rotation (with
    `block`, the block's `rope` may be None too: it hands its attention what it is given).
    Once: a package whose rotation is guarded already keeps its one guard."""
    edits.set_param_annotation(package, "Attention", "forward", "rope", OPTIONAL_TABLE)
    if block:
        edits.set_param_annotation(package, "TransformerBlock", "forward", "rope", OPTIONAL_TABLE)
    attention = edits.find_method(package.module("model.py"), "Attention", "forward")
    if attention is None or not m.findall(attention, _GUARD):
        run(package, "model.py", _GuardRotation())


_GUARD = m.If(test=m.Comparison(left=m.Name("rope"), comparisons=[m.ComparisonTarget(m.IsNot())]))


class _GuardRotation(edits.InMethod):
    """Wrap `cos, sin = rope` and the statements that rotate q/k in `if rope is not None:`."""

    def __init__(self):
        super().__init__("Attention", "forward")

    def leave_FunctionDef(self, original, updated):
        hit = self._stack == ["Attention", "forward"]
        self._stack.pop()
        if not hit:
            return updated
        body = list(updated.body.body)
        uses = [i for i, s in enumerate(body) if _uses_rope(s)]
        if not uses:
            return updated
        first, last = uses[0], uses[-1]
        guard = edits.statements(GUARD)[0]
        guard = guard.with_changes(body=guard.body.with_changes(body=body[first : last + 1]))
        self.hits += 1
        body[first : last + 1] = [guard]
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _uses_rope(statement) -> bool:
    """The statement reads the rotary table or its halves (`cos, sin = rope`, any rotation
    of q/k with them, whatever the rotation is called)."""
    return bool(m.findall(statement, m.Name("rope") | m.Name("cos") | m.Name("sin")))
