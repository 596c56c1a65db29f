"""The q/k norms take an epsilon of their own, not the block norms' norm_eps."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run
from codegen.transforms.qk_norm import _DropCommentsMentioning

_NORMS = ("q_norm", "k_norm")
_BLOCK_EPS = m.Attribute(value=m.Name("args"), attr=m.Name("norm_eps"))


class QkNormEps(Transform):
    """The q/k norms (or the keys' alone) built with `args.norm_eps` take `args.qk_norm_eps`
    instead: `eps` is the analysis's `attention.qk_norm_eps`, the config field the code passes
    them (mapped in `from_hf_config`; DeepSeek-V4-style `eps=config.kv_norm_eps`) or the
    number it fixes (the field's default, unmapped), with its value in the analysed config."""

    name = "qk_norm_eps"

    def apply(self, package, features=None, *, eps: dict) -> None:
        step = _OwnEps()
        run(package, "model.py", step, required=False)
        if not step.hits:
            raise EditError("Attention builds no q_norm or k_norm with args.norm_eps")
        package.edit("args.py", _DropCommentsMentioning("q_norm"))  # norm_eps: not theirs now
        whose = "the q/k norms'" if "q_norm" in step.norms else "the key norm's"
        if eps["field"]:
            code = f"qk_norm_eps: float = {eps['value']!r}  # {whose} epsilon, not norm_eps"
            edits.add_args_field(package, code, f"qk_norm_eps=hf_config.{eps['field']}")
        else:
            code = f"qk_norm_eps: float = {eps['value']!r}  # {whose} epsilon, fixed by the code"
            edits.add_args_field(package, code)


class _OwnEps(edits.InMethod):
    def __init__(self):
        super().__init__("Attention", "__init__")
        self.norms: set[str] = set()

    def leave_Assign(self, original, updated):
        target = updated.targets[0].target if len(updated.targets) == 1 else None
        norm = m.Attribute(value=m.Name("self"), attr=m.OneOf(*(m.Name(n) for n in _NORMS)))
        if not self.in_scope() or target is None or not m.matches(target, norm):
            return updated
        value = m.replace(updated.value, _BLOCK_EPS, _QK_EPS)
        if value.deep_equals(updated.value):
            return updated
        self.hits += 1
        self.norms.add(target.attr.value)
        return updated.with_changes(value=value)


_QK_EPS = cst.Attribute(value=cst.Name("args"), attr=cst.Name("qk_norm_eps"))
