"""Clamp the dense (and shared) MLP's gate and up branches before their SwiGLU product."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._clamp_edits import clamp_product
from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run

PLAIN = "silu(w1(x)) * w3(x)"
CLAMPED = "silu(w1(x).clamp(max=limit)) * w3(x).clamp(-limit, limit)"


class ClampFeedForward(Transform):
    """FeedForward's `F.silu(gate) * up` becomes
    `F.silu(gate.clamp(max=self.limit)) * up.clamp(-self.limit, self.limit)`: the dense
    layers' MLP and the shared expert (DeepSeek-V4's swiglu_limit). `limit` is the analysed
    `ffn.clamp`, the HF config field of the bound, read as `swiglu_limit`; the routed
    experts are `clamp_experts`' (ffn.experts_clamp). `shared_unclamped` (the analysed
    `ffn.shared_unclamped`: the shared expert a class of its own that does not clamp) builds
    the shared expert with an infinite limit, which leaves its branches as they are."""

    name = "clamp_feed_forward"

    def apply(self, package, features=None, *, limit: str, shared_unclamped: bool = False):
        clamp_product(package, "FeedForward", "w2", limit)
        run(package, "model.py", SetClassDocstring("FeedForward", _docstring))
        if shared_unclamped:
            run(package, "model.py", _UnboundedSharedExpert())


class _UnboundedSharedExpert(cst.CSTTransformer):
    """`self.shared_experts = FeedForward(..., args.swiglu_limit)` -> `..., float("inf"))`."""

    hits = 0

    def leave_SimpleStatementLine(self, original, updated):
        if not m.matches(updated, _SHARED):
            return updated
        self.hits += 1
        call = m.replace(updated.body[0].value, _BOUND, cst.parse_expression('float("inf")'))
        comment = cst.EmptyLine(comment=cst.Comment("# a SwiGLU of its own: unclamped"))
        return updated.with_changes(
            body=[updated.body[0].with_changes(value=call)],
            leading_lines=[*updated.leading_lines, comment],
        )


_BOUND = m.Attribute(value=m.Name("args"), attr=m.Name("swiglu_limit"))
_LIMIT = m.Arg(value=_BOUND)
_SHARED = m.SimpleStatementLine(
    body=[
        m.Assign(
            targets=[m.AssignTarget(m.Attribute(m.Name("self"), m.Name("shared_experts")))],
            value=m.Call(func=m.Name("FeedForward"), args=[m.ZeroOrMore(), _LIMIT]),
        )
    ]
)


def _docstring(old: str | None) -> str:
    text = old or f"SwiGLU: w2({PLAIN})."
    if PLAIN not in text:
        raise EditError("the FeedForward docstring does not state its SwiGLU")
    return text.replace(PLAIN, CLAMPED, 1)
