"""Set the dense feed-forward projections' biases to the target's.

A reference whose config switches the biases (llama's `mlp_bias`) builds its FeedForward
with a `bias` parameter; a fixed setting needs no parameter, so it goes, with the `bias=`
argument of every `FeedForward(...)` call.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import SetKeyword, run
from codegen.transforms.qkv_bias import set_adapter_rows

_ROWS = [
    (f'"model.layers.{{}}.mlp.{hf}.bias"', f'"layers.{{}}.feed_forward.{house}.bias"')
    for hf, house in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2"))
]


class SetFeedForwardBias(Transform):
    """FeedForward's w1/w2/w3 are built with `bias=<enabled>` (a `bias` parameter of
    FeedForward, if any, is removed with the arguments passed to it); adapter rows follow."""

    name = "set_ffn_bias"
    modules = ("w1", "w2", "w3")  # the house projections whose bias it sets

    def apply(self, package, features=None, *, enabled: bool) -> None:
        run(
            package,
            "model.py",
            SetKeyword("FeedForward", "__init__", {"w1", "w2", "w3"}, "bias", str(enabled)),
        )
        package.edit("model.py", _DropBiasParameter())
        set_adapter_rows(package, _ROWS, enabled)


class _DropBiasParameter(m.MatcherDecoratableTransformer):
    """`def __init__(self, dim, hidden_dim, bias=False)` of FeedForward loses `bias`, and
    `FeedForward(..., bias=...)` calls lose the argument."""

    def __init__(self):
        super().__init__()
        self._class: list[str] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._class[-1:] != ["FeedForward"] or updated.name.value != "__init__":
            return updated
        params = [p for p in updated.params.params if p.name.value != "bias"]
        params[-1:] = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params[-1:]]
        return updated.with_deep_changes(updated.params, params=params)

    @m.leave(m.Call(func=m.Name("FeedForward")))
    def call(self, original, updated):
        args = [a for a in updated.args if not m.matches(a, m.Arg(keyword=m.Name("bias")))]
        args[-1:] = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args[-1:]]
        return updated.with_changes(args=args)
