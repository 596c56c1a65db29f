"""Make every LayerNorm of the model non-parametric: no learned scale, no bias (OLMo)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms._ffn_edits import EditCalls, rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError
from codegen.transforms.norm_kind import LAYERNORM_CLASSES

_NOT_AFFINE = cst.Arg(
    value=cst.Name("False"),
    keyword=cst.Name("elementwise_affine"),
    equal=cst.AssignEqual(
        whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
    ),
)
_COMMA = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
# keywords that say nothing once the norm holds no tensors
_AFFINE_KEYWORDS = ("bias", "elementwise_affine")


class DropNormWeight(Transform):
    """Every `nn.LayerNorm(...)` of model.py is built `elementwise_affine=False` (it only
    centres and scales by the standard deviation); the norms' adapter rows go, since the
    checkpoint holds no tensor for them.

    Runs after `set_norm_kind` made the norms LayerNorms; an RMSNorm is not edited.
    """

    name = "drop_norm_weight"

    def apply(self, package, features=None) -> None:
        def rewrite(original, updated):
            args = [
                a for a in updated.args if not (a.keyword and a.keyword.value in _AFFINE_KEYWORDS)
            ]
            args.append(_NOT_AFFINE)
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
        rewrite_adapter(package, lambda hf, house: [] if _norm_tensor(house) else [(hf, house)])


def _norm_tensor(house: str | None) -> bool:
    """A norm's scale or bias (house norm modules are named `...norm`)."""
    if house is None:
        return False
    module, _, tensor = house.rpartition(".")
    return tensor in ("weight", "bias") and module.endswith("norm")
