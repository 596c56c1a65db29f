"""Clamp q, k and v to [-clip_qkv, clip_qkv] when the config sets `clip_qkv` (OLMo).

HF clamps each projection's output (after a QK-norm, if any) before the heads are rotated;
the clamp is elementwise, so it commutes with the reshapes: the value assigned to `q`, `k`
and `v` in `Attention.forward` is wrapped as a whole. A fused projection (`self.wqkv(x)`,
MPT's and DBRX's Wqkv, clamped by HF before the split) is wrapped itself; with a QK-norm
beside it the order would matter, so that is an error. `clip_qkv=None` (most checkpoints)
leaves them alone, so the package keeps both settings.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ScopedTransformer,
    calls_super_init,
    run,
)

FIELD = "clip_qkv: float | None = None  # q/k/v clamped to [-clip_qkv, clip_qkv]; None: never"
METHOD = """
def clip(self, t: torch.Tensor) -> torch.Tensor:
    if self.clip_qkv is None:
        return t
    return t.clamp(-self.clip_qkv, self.clip_qkv)
"""
_PROJECTIONS = {"q": "wq", "k": "wk", "v": "wv"}


class ClipQkv(Transform):
    """q/k/v are clamped to [-clip_qkv, clip_qkv] when the config sets clip_qkv."""

    name = "clip_qkv"

    def apply(self, package, features=None) -> None:
        wrap = _WrapProjections()
        run(package, "model.py", wrap, required=False)
        if wrap.fused and (wrap.hits or wrap.fused > 1 or _has_qk_norm(package)):
            raise EditError("Attention.forward: a fused wqkv call beside q/k/v norms or others")
        if not wrap.fused and wrap.hits != len(_PROJECTIONS):
            raise EditError(f"Attention.forward assigns {wrap.hits} of q, k, v from wq/wk/wv")
        run(
            package,
            "model.py",
            InsertStatements(
                "Attention",
                "__init__",
                calls_super_init,
                "self.clip_qkv = args.clip_qkv",
            ),
        )
        moe_edits.add_method(package, "model.py", "Attention", METHOD)
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"clip_qkv": "hf_config.clip_qkv"})


def _has_qk_norm(package) -> bool:
    norm = m.Attribute(value=m.Name("self"), attr=m.Name("q_norm") | m.Name("k_norm"))
    return bool(m.findall(package.files["model.py"], norm))


_FUSED = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("wqkv")))


class _WrapProjections(ScopedTransformer):
    """`q = <expr calling self.wq>` -> `q = self.clip(<expr>)` in Attention.forward; a fused
    `self.wqkv(...)` call -> `self.clip(self.wqkv(...))` (counted in `fused`)."""

    def __init__(self):
        super().__init__("Attention", "forward")
        self.fused = 0

    def leave_Call(self, original, updated):
        if not self.in_scope() or not m.matches(updated, _FUSED):
            return updated
        self.fused += 1
        clip = cst.Attribute(value=cst.Name("self"), attr=cst.Name("clip"))
        return cst.Call(func=clip, args=[cst.Arg(updated)])

    def leave_Assign(self, original, updated):
        if not self.in_scope() or len(updated.targets) != 1:
            return updated
        target = updated.targets[0].target
        if not isinstance(target, cst.Name) or target.value not in _PROJECTIONS:
            return updated
        projection = m.Call(
            func=m.Attribute(value=m.Name("self"), attr=m.Name(_PROJECTIONS[target.value]))
        )
        if not m.findall(updated.value, projection):
            return updated
        self.hits += 1
        clip = cst.Attribute(value=cst.Name("self"), attr=cst.Name("clip"))
        return updated.with_changes(value=cst.Call(func=clip, args=[cst.Arg(updated.value)]))
