"""The router divides its picked weights by their sum plus the constant HF adds, or none.

HF's routers that renormalise the k picked weights divide by `sum` (Mixtral), by
`sum + 1e-20` (DeepSeek-V3, GLM-4-MoE) or by `sum + 1e-6` (LFM2-MoE): another formula each,
as the analysis reads it (`moe.norm_topk_eps`, the number added at HF's division). The
renormalisation the reference or an earlier rule wrote (`weights / weights.sum(...)`, the
deepseek_v3 reference's `weights / (weights.sum(...) + 1e-20)`) takes that constant, or
drops its own where HF adds none.
"""

from __future__ import annotations

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run

# the router's renormalisation: where the router rules write it, the product-key experts'
# (their own router) and the softmax router that picks the k of its probabilities
SITES = (
    *moe_edits.ROUTER_SITES,
    ("Router", "forward"),
    ("ProductKeyExperts", "forward"),
)


class RouterRenormEps(Transform):
    """Every renormalisation of the picked weights at the router's sites (`<w> / <w>.sum(...)`,
    with or without a number added to the sum) divides by the sum plus `eps`, the analysed
    `moe.norm_topk_eps`, or by the bare sum where it is None. A constant given where the
    package renormalises nowhere is refused: HF divides and the package would not."""

    name = "router_renorm_eps"

    def apply(self, package, features=None, *, eps: float | None = None) -> None:
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, int | float)):
            raise EditError(f"router_renorm_eps: {eps!r} is not a number")
        divisions = 0
        for cls, method in SITES:
            if not moe_edits.has_class(package, "model.py", cls):
                continue
            renormalise = moe_edits.Renormalise(cls, method, eps)
            run(package, "model.py", renormalise, required=False)
            divisions += renormalise.hits
        if eps is not None and not divisions:
            raise EditError(
                f"router_renorm_eps: HF adds {eps!r} to the sum it renormalises the picked"
                " weights by; the package's router divides by no sum"
            )
