"""Make every norm of the model non-parametric: no learned scale, no bias (OLMo, nanochat)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms._ffn_edits import (
    EditCalls,
    InsertClassBefore,
    drop_import,
    rewrite_adapter,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, expression, run
from codegen.transforms.norm_kind import LAYERNORM_CLASSES

# HF's weightless RMSNorm (nanochat): normalise in fp32, cast back; nothing to learn. It
# takes `dim` as RMSNorm(dim, eps) does, so the rules swap one for the other by name;
# tidy's `drop_unread_parameters` then drops it from the class and every call
PLAIN_RMSNORM = '''
class PlainRMSNorm(nn.Module):
    """RMSNorm without a learned scale: normalised in fp32, cast back to the input's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x)
'''

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
    centres and scales by the standard deviation), every house `RMSNorm(dim, eps)` becomes
    the weightless `PlainRMSNorm` above; the norms' adapter rows go, since the checkpoint
    holds no tensor for them.

    Runs after `set_norm_kind` (LayerNorms get their kind first).
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
        plain = EditCalls(
            None, None, "RMSNorm", lambda o, updated: updated.with_changes(func=_PLAIN)
        )
        package.edit("model.py", plain)
        if plain.hits:
            run(package, "model.py", InsertClassBefore(PLAIN_RMSNORM))
            drop_import(package, "model.py", "codegen.layers.norm", "RMSNorm")
        if not hits + plain.hits:
            raise EditError("model.py builds no LayerNorm or RMSNorm")
        rewrite_adapter(package, lambda hf, house: [] if _norm_tensor(house) else [(hf, house)])


_PLAIN = expression("PlainRMSNorm")


def _norm_tensor(house: str | None) -> bool:
    """A norm's scale or bias (house norm modules are named `...norm`)."""
    if house is None:
        return False
    module, _, tensor = house.rpartition(".")
    return tensor in ("weight", "bias") and module.endswith("norm")
