"""Fuse the gated feed-forward's gate and up projections into one `w13`, as the checkpoint."""

from __future__ import annotations

import re

from codegen.transforms._ffn_edits import (
    ReplaceExpressions,
    SetClassDocstring,
    adapter_rows,
    class_source,
    house_parameter,
    rename_component,
    rewrite_adapter,
    self_assignment,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    calls,
    code_of,
    expression,
    run,
)

# how one fused output splits into (gate, up), per checkpoint layout
SPLITS = {
    # phi3 / glm4: `gate, up_states = up_states.chunk(2, dim=-1)`, gate is the first half
    "concat": ("gate, up = self.w13({x}).chunk(2, dim=-1)", "first half"),
    # gpt-oss style: gate and up alternate along the output features
    "interleaved": (
        "gate_up = self.w13({x})\ngate, up = gate_up[..., ::2], gate_up[..., 1::2]",
        "even features",
    ),
}
_FFN = "feed_forward"


class FuseGateUp(Transform):
    """FeedForward's w1 (gate) and w3 (up) become one `w13` whose output is split by `layout`.

    `layout` is "concat" (gate = first half) or "interleaved" (gate = even features). The
    adapter maps the checkpoint's single `mlp.<hf_name>` tensor to `w13` unchanged, so no
    weight is split on load. Apply after any activation change (it composes either way).
    """

    name = "fuse_gate_up"

    def apply(self, package, features=None, *, layout: str, hf_name: str = "gate_up_proj"):
        if layout not in SPLITS:
            raise ValueError(f"gate/up layout {layout!r} is not one of {sorted(SPLITS)}")
        w1 = self_assignment(package, "model.py", "FeedForward", "__init__", "w1")
        w3 = self_assignment(package, "model.py", "FeedForward", "__init__", "w3")
        if w1 is None or w3 is None:
            raise EditError("FeedForward has no separate w1 and w3 to fuse")
        width = w1.args[1].with_changes(value=expression(f"2 * {code_of(w1.args[1].value)}"))
        fused = code_of(w1.with_changes(args=[w1.args[0], width, *w1.args[2:]]))
        init = ("FeedForward", "__init__")
        run(
            package,
            "model.py",
            ReplaceStatements(*init, assigns("self.w1"), f"self.w13 = {fused}"),
        )
        run(package, "model.py", ReplaceStatements(*init, assigns("self.w3"), ""))
        x = _gate_input(package)
        split, gate_part = SPLITS[layout]
        run(
            package,
            "model.py",
            InsertStatements(
                "FeedForward",
                "forward",
                calls("self.w1"),
                split.format(x=x),
                before=True,
            ),
        )
        forward = ("FeedForward", "forward")
        run(package, "model.py", ReplaceExpressions(*forward, f"self.w1({x})", "gate"))
        run(package, "model.py", ReplaceExpressions(*forward, f"self.w3({x})", "up"))
        run(package, "model.py", SetClassDocstring("FeedForward", _docstring(gate_part)))
        _fuse_rows(package, hf_name)


def _gate_input(package) -> str:
    """The name FeedForward.forward feeds to `self.w1` (usually `x`)."""
    source = class_source(package, "model.py", "FeedForward")
    found = re.search(r"self\.w1\((\w+)\)", source)
    if found is None:
        raise EditError("FeedForward.forward does not call self.w1")
    return found.group(1)


def _docstring(gate_part: str):
    def rewrite(old: str | None) -> str:
        text = (old or "Gated MLP: w2(act(w1(x)) * w3(x)).").rstrip(".")
        text = text.replace("w1(x)", "gate").replace("w3(x)", "up")
        return f"{text}; gate ({gate_part}) and up from one projection w13(x)."

    return rewrite


def _fuse_rows(package, hf_name: str) -> None:
    rows = adapter_rows(package)
    gate_rows = [hf for hf, house in rows if house_parameter(house, f"{_FFN}.w1")]
    if not gate_rows or not all(".gate_proj." in hf for hf in gate_rows):
        raise EditError("the adapter's feed_forward.w1 rows do not read mlp.gate_proj")

    def rewrite(hf: str, house: str | None):
        if house_parameter(house, f"{_FFN}.w3"):
            return []
        parameter = house_parameter(house, f"{_FFN}.w1")
        if parameter:
            fused_house = house.removesuffix(f"w1.{parameter}") + f"w13.{parameter}"
            return [(rename_component(hf, "gate_proj", hf_name), fused_house)]
        return [(hf, house)]

    rewrite_adapter(package, rewrite)
