"""Whether a gated feed-forward takes its product in fp32, cast back once.

Beam's MLP and experts compute `(self.act_fn(gate.float()) * up.float()).to(gate.dtype)`: the
activation of the upcast gate times the upcast up, one rounding to the model's dtype. The
usual `act_fn(gate) * up` rounds the activation and then the product: in bf16 the two differ
on most elements by a step, and a package must do what the checkpoint's code does. The
data-flow trace treats casts as pass-through, so this reads the source: any method of the
module's class (its forward, or a helper the experts kernels call: `_apply_gate`).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.router_dtype import _cast_locals, upcast
from codegen.analyze.walk import findall

_PRODUCT = m.BinaryOperation(operator=m.Multiply())


def _activated(expr: cst.BaseExpression, casts: frozenset[str]) -> bool:
    """`<act>(<fp32 cast>)`: a call whose first argument is an upcast tensor."""
    return isinstance(expr, cst.Call) and bool(expr.args) and upcast(expr.args[0].value, casts)


def fp32_gated_product(fn: cst.FunctionDef) -> cst.BinaryOperation | None:
    """The first product in `fn` of an activation of an upcast tensor and an upcast tensor
    (either order), else None."""
    casts = _cast_locals(fn)
    for node in findall(fn, _PRODUCT):
        left, right = node.left, node.right
        if (_activated(left, casts) and upcast(right, casts)) or (
            _activated(right, casts) and upcast(left, casts)
        ):
            return node
    return None


def fp32_gated_product_site(project, rec) -> str | None:
    """file:line of `fp32_gated_product` in a method of `rec`'s class (or a base), else None."""
    cls = getattr(rec, "cls", None)
    if cls is None:
        return None
    for owner in project.mro(cls):
        for fn in owner.methods.values():
            node = fp32_gated_product(fn)
            if node is not None:
                return owner.sf.cite(node)
    return None
