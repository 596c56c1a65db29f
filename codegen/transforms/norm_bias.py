"""Give every LayerNorm of the model a bias (or none), with its adapter rows."""

from __future__ import annotations

import libcst as cst

from codegen.transforms._ffn_edits import EditCalls
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, expression
from codegen.transforms.norm_kind import LAYERNORM_CLASSES, norm_bias_rows
from codegen.transforms.qkv_bias import set_adapter_rows

_NO_BIAS = cst.Arg(
    value=expression("False"),
    keyword=cst.Name("bias"),
    equal=cst.AssignEqual(
        whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
    ),
)
_COMMA = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


class SetNormBias(Transform):
    """Every `nn.LayerNorm(...)` (or `OffsetLayerNorm(...)`) of model.py gets a bias when
    `enabled` (nn.LayerNorm's default, so the keyword goes) or `bias=False`; every norm's
    `.bias` row follows.

    Runs after `set_norm_kind` made the norms LayerNorms: an RMSNorm has no bias to set.
    """

    name = "set_norm_bias"

    def apply(self, package, features=None, *, enabled: bool) -> None:
        def rewrite(original, updated):
            args = [a for a in updated.args if not (a.keyword and a.keyword.value == "bias")]
            if not enabled:
                args.append(_NO_BIAS)
            args = [a.with_changes(comma=_COMMA) for a in args[:-1]] + [
                args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            ]
            return updated.with_changes(args=args)

        hits = 0
        for cls in LAYERNORM_CLASSES.values():
            found = EditCalls(None, None, cls, rewrite)
            package.edit("model.py", found)
            hits += found.hits
        if not hits:
            raise EditError("model.py builds no LayerNorm (set_norm_kind runs first)")
        set_adapter_rows(package, norm_bias_rows(package), enabled)
