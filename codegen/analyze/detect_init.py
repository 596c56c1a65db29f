"""How HF's `_init_weights` starts the weights, where it departs from the plain table
(normal(0, initializer_range) for every matrix): GPT-2's scheme starts the projections onto
the residual stream (attention output, MLP output) at std / sqrt(2 * n_layers)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx

# `math.sqrt(2 * <layers>)`
_SQRT_TWO_LAYERS = m.Call(
    func=m.Attribute(attr=m.Name("sqrt")) | m.Name("sqrt"),
    args=[m.Arg(m.BinaryOperation(left=m.Integer("2"), operator=m.Multiply()))],
)


def scaled_residual_init(ctx: Ctx) -> bool:
    """Some `_init_weights` of the modeling file divides the std by sqrt(2 * layers)."""
    sf = ctx.model.modeling
    for cls in sf.classes.values():
        method = cls.methods.get("_init_weights")
        if isinstance(method, cst.FunctionDef) and m.findall(method, _SQRT_TWO_LAYERS):
            ctx.cite("block.scaled_residual_init", f"{sf.cite(method)} (std / sqrt(2 * layers))")
            return True
    ctx.cite("block.scaled_residual_init", "no scaled init of the residual projections")
    return False
