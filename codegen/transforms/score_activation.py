"""Score the Gate's experts by another elementwise activation of its logits (sqrt(softplus))."""

from __future__ import annotations

import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, code_of, expression, run

ACTIVATIONS = {"sqrtsoftplus": "F.softplus({x}).sqrt()"}
DOC = "sqrt(softplus(logits)) scores"


class ScoreActivation(Transform):
    """The Gate (deepseek_v3's sigmoid router; or the sigmoid scores of an MoE's `route`,
    as moe_router writes them into a softmax router) scores by another elementwise
    activation of its logits, `activation` the analysed `moe.score_activation` (DeepSeek-V4's
    `sqrtsoftplus`: `F.softplus(logits).sqrt()`); the correction bias, the pick, the
    renormalisation and the scaling stay the sigmoid router's."""

    name = "score_activation"

    def apply(self, package, features=None, *, activation: str) -> None:
        if activation not in ACTIVATIONS:
            raise EditError(f"no template for router scores {activation!r}")
        template = ACTIVATIONS[activation]
        if not run(package, "model.py", _Scores(template, "Gate", "forward"), required=False):
            # the sigmoid router the moe_router rule writes into a softmax MoE's `route`
            run(package, "model.py", _Scores(template, "MoE", "route"))
            return
        run(package, "model.py", SetClassDocstring("Gate", _docstring))
        run(package, "model.py", _Reword("a sigmoid router", f"a router of {DOC}"), required=False)
        run(package, "args.py", _Reword("k sigmoid scores", "k scores"), required=False)


def _docstring(old: str | None) -> str:
    text = old or ""
    if not text.startswith("Sigmoid router"):
        raise EditError("the Gate docstring does not name its sigmoid scores")
    first, newline, rest = text.replace("Sigmoid router", f"Router of {DOC}", 1).partition("\n")
    first = textwrap.fill(first, 88, subsequent_indent="    ")
    return first + newline + rest if newline else first + ("\n    " if "\n" in first else "")


class _Scores(ScopedTransformer):
    """`<logits>.sigmoid()` / `torch.sigmoid(<logits>)` in `cls.method` -> the activation."""

    def __init__(self, template: str, cls: str, method: str):
        super().__init__(cls, method)
        self.template = template

    def leave_Call(self, original, updated):
        if not self.in_scope():
            return updated
        if m.matches(updated, m.Call(func=m.Attribute(attr=m.Name("sigmoid")), args=[])):
            x = updated.func.value
        elif m.matches(updated.func, m.Attribute(m.Name("torch"), m.Name("sigmoid"))):
            x = updated.args[0].value
        else:
            return updated
        self.hits += 1
        return expression(self.template.format(x=code_of(x)))


class _Reword(cst.CSTTransformer):
    """A phrase of the module docstring or of a comment, reworded."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new, self.hits = old, new, 0

    def leave_SimpleString(self, original, updated):
        if self.old not in updated.value:
            return updated
        self.hits += 1
        return updated.with_changes(value=updated.value.replace(self.old, self.new))

    def leave_Comment(self, original, updated):
        if self.old not in updated.value:
            return updated
        self.hits += 1
        return updated.with_changes(value=updated.value.replace(self.old, self.new))
