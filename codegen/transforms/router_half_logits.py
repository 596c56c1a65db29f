"""Project the Gate's router logits in the model's dtype, as HF routers that never upcast do.

deepseek_v3's Gate casts the router input and weight to float32 before the projection. A
target whose router is a plain `F.linear(hidden, weight)` in bf16 rounds the logits (and
the scores taken from them) to bf16; a package that keeps the fp32 projection scores every
expert more finely than HF and, on near ties, picks other experts (a routing flip, not a
rounding difference).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, run

# `<x>.float()`
_UPCAST = m.Call(func=m.Attribute(attr=m.Name("float")), args=[])
# `F.linear(...)` / `torch.nn.functional.linear(...)` / `linear(...)`
_LINEAR = m.Call(func=m.Attribute(attr=m.Name("linear")) | m.Name("linear"))
# `logits.sigmoid()`: the Gate's scores
_SCORES = m.Call(func=m.Attribute(value=m.Name("logits"), attr=m.Name("sigmoid")), args=[])
FP32 = ", in fp32"


class RouterHalfLogits(Transform):
    """In `Gate.forward`, the router projection `F.linear(x.float(), self.weight.float())`
    loses its casts: `F.linear(x, self.weight)` runs in the model's dtype, so the logits
    are bf16 in a bf16 model as HF's are. With `scores_fp32` (HF upcasts the rounded logits
    before its sigmoid: `sigmoid(logits.float())`) the scores are taken of
    `logits.float()`; without (DeepSeek-V4's `score_fn(logits)`) the scores and the weights
    gathered from them stay in the logits' dtype (a selection bias kept in fp32 still
    promotes the biased scores the pick reads). The Gate's docstring no longer says fp32. A
    no-op on fp32 models. Running it twice gives the same code."""

    name = "router_half_logits"

    def apply(self, package, features=None, *, scores_fp32: bool) -> None:
        hits = run(package, "model.py", _HalfProjection(), required=False)
        if hits and scores_fp32:
            run(package, "model.py", _Fp32Scores())
        run(package, "model.py", SetClassDocstring("Gate", _docstring))
        tree = package.module("model.py")
        if not _half_projection(tree):
            raise EditError("model.py: Gate.forward projects no router logits `F.linear(x, w)`")


def _docstring(old: str | None) -> str:
    text = old or ""
    return text.replace(FP32, "", 1)


def _half_projection(tree: cst.Module) -> bool:
    """Some `linear` call reads `self.weight` uncast."""
    weight = m.Attribute(value=m.Name("self"), attr=m.Name("weight"))
    return any(
        any(m.matches(a.value, weight) for a in call.args) for call in m.findall(tree, _LINEAR)
    )


class _HalfProjection(ScopedTransformer):
    def __init__(self):
        super().__init__("Gate", "forward")

    def leave_Call(self, original, updated):
        if not self.in_scope() or not m.matches(updated, _LINEAR):
            return updated
        args = [_uncast(a) for a in updated.args]
        if args == list(updated.args):
            return updated
        self.hits += 1
        return updated.with_changes(args=args)


class _Fp32Scores(ScopedTransformer):
    """`logits.sigmoid()` in Gate.forward -> `logits.float().sigmoid()`."""

    def __init__(self):
        super().__init__("Gate", "forward")

    def leave_Call(self, original, updated):
        if self.in_scope() and m.matches(updated, _SCORES):
            self.hits += 1
            upcast = cst.Call(func=cst.Attribute(value=updated.func.value, attr=cst.Name("float")))
            return updated.with_changes(func=updated.func.with_changes(value=upcast))
        return updated


def _uncast(arg: cst.Arg) -> cst.Arg:
    if m.matches(arg.value, _UPCAST):
        return arg.with_changes(value=arg.value.func.value)
    return arg
