"""A layer whose output is multiplied by a stored tensor of its own (gemma4's `layer_scalar`,
a persistent buffer of ones the checkpoint holds): the residual sums leave the layer times
it. A package without it loads no such key and computes another model once the checkpoint's
value is not one."""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, first_output
from codegen.analyze.evaluate import ParamRec


def detect(ctx: Ctx) -> tuple[str | None, bool]:
    """(the layer attribute its output is multiplied by, whether it is a trained parameter
    rather than a buffer); (None, False) without one."""
    layers = ctx.model.layers
    if not layers:
        return None, False
    layer = layers[0]
    out = first_output(ctx.trace(layer).result)
    if not isinstance(out, Term) or out.op != "mul":
        return None, False
    for arg in out.args:
        if isinstance(arg, Term) and arg.op == "param" and isinstance(arg.module, ParamRec):
            for name, value in layer.attrs.items():
                if value is arg.module and (value.kind != "buffer" or value.persistent):
                    site = out.site.cite() if out.site else ctx.site(layer)
                    ctx.cite("block.output_scale", f"{site} (times self.{name})")
                    return name, value.kind != "buffer"
    return None, False
