"""Set the dense feed-forward projections' biases to the target's.

`enabled` is a fixed setting (True/False) or the name of the bool config field that
switches the biases (llama's `mlp_bias`, doge's). A reference whose config switches them
builds its FeedForward with a `bias` parameter; a fixed setting needs no parameter, so it
goes, with the `bias=` argument of every `FeedForward(...)` call. A switch gets that
parameter (where the reference fixes the biases, qwen3) and every call passes
`bias=args.<field>`; the adapter keeps the rows, which checkpoints with the switch on carry.
"""

from __future__ import annotations

import ast
import json

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    SetKeyword,
    expression,
    findall,
    run,
    set_call_keyword,
)
from codegen.transforms.qkv_bias import bias_setting, set_adapter_rows

_ROWS = [
    (f'"model.layers.{{}}.mlp.{hf}.bias"', f'"layers.{{}}.feed_forward.{house}.bias"')
    for hf, house in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2"))
]


class SetFeedForwardBias(Transform):
    """FeedForward's w1/w2/w3 are built with `bias=<enabled>` (a `bias` parameter of
    FeedForward, if any, is removed with the arguments passed to it), or, for a config
    switch, with FeedForward's `bias` parameter, passed `args.<field>`; adapter rows follow."""

    name = "set_ffn_bias"
    modules = ("w1", "w2", "w3")  # the house projections whose bias it sets

    def apply(self, package, features=None, *, enabled: bool | str) -> None:
        switched = isinstance(enabled, str)
        value = bias_setting(package, enabled, "gate/up/down biases")
        run(
            package,
            "model.py",
            SetKeyword(
                "FeedForward", "__init__", {"w1", "w2", "w3"}, "bias", "bias" if switched else value
            ),
        )
        run(package, "model.py", _BiasParameter(value if switched else None))
        set_adapter_rows(package, _bias_rows(package), bool(enabled))


def _bias_rows(package) -> list[tuple[str, str]]:
    """The block MLP's bias rows (`_ROWS`) and, beside the weight rows of every other
    FeedForward the model builds (DeepSeek's `self.shared_experts = FeedForward(...)`),
    theirs: every instance has the biases."""
    built = {
        node.targets[0].target.attr.value
        for node in findall(package.module("model.py"), _BUILDS_FEED_FORWARD)
    }
    rows = list(_ROWS)

    def look(key, value):
        try:
            hf, house = ast.literal_eval(key), ast.literal_eval(value)
        except (ValueError, SyntaxError):  # a dropped key (None) or a stacked row
            return [(key, value)]
        *owner, name, kind = house.split(".") if isinstance(house, str) else ("", "", "")
        if kind == "weight" and name in {"w1", "w2", "w3"} and owner[-1:] and owner[-1] in built:
            row = tuple(json.dumps(k.removesuffix(".weight") + ".bias") for k in (hf, house))
            rows.extend([row] if row not in rows else [])
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", look))
    return rows


_BUILDS_FEED_FORWARD = m.Assign(
    targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))],
    value=m.Call(func=m.Name("FeedForward")),
)


class _BiasParameter(m.MatcherDecoratableTransformer):
    """With `passed` None, `def __init__(self, dim, hidden_dim, bias=False)` of FeedForward
    loses `bias` and `FeedForward(..., bias=...)` calls lose the argument; else FeedForward
    takes `bias: bool = False` and every call passes `bias=<passed>`."""

    def __init__(self, passed: str | None):
        super().__init__()
        self.passed = passed
        self._class: list[str] = []
        self.hits = 0

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._class[-1:] != ["FeedForward"] or updated.name.value != "__init__":
            return updated
        self.hits += 1
        params = [p for p in updated.params.params if p.name.value != "bias"]
        if self.passed is not None:
            params.append(_BIAS_PARAMETER)
        params[-2:] = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params[-2:]]
        return updated.with_deep_changes(updated.params, params=params)

    @m.leave(m.Call(func=m.Name("FeedForward")))
    def call(self, original, updated):
        if self.passed is not None:
            return set_call_keyword(updated, "bias", expression(self.passed))
        args = [a for a in updated.args if not m.matches(a, m.Arg(keyword=m.Name("bias")))]
        args[-1:] = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args[-1:]]
        return updated.with_changes(args=args)


_BIAS_PARAMETER = cst.Param(
    name=cst.Name("bias"),
    annotation=cst.Annotation(cst.Name("bool")),
    default=cst.Name("False"),
    equal=cst.AssignEqual(
        whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")
    ),
)
