"""Whether the residual stream is kept in fp32 whatever the model's dtype (zaya).

ZAYA's backbone casts the scaled embeddings `.to(torch.float32)` before its layer loop; its
layers norm `residual.to(norm.weight.dtype)` and add the sublayers' half-precision outputs to
the fp32 residual, which type promotion keeps fp32, and the final norm reads the stream cast
back. A bf16 package that leaves the stream in bf16 rounds every residual sum: it differs
from such a checkpoint's model silently. The data-flow trace treats casts as pass-through,
so this reads the source: in the stack owner's forward (or a base's), the last statement
before the loop over the layers that assigns the name the loop's layer call reads first is
an fp32 cast (`x.float()`, `x.to(torch.float32)`).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.router_dtype import upcast
from codegen.analyze.walk import findall


def detect(ctx: Ctx) -> bool:
    owner = ctx.model.stack_owner
    cls = getattr(owner, "cls", None)
    if cls is None:
        return False
    for base in ctx.model.project.mro(cls):
        fn = base.methods.get("forward")
        if fn is None:
            continue
        site = _cast_before_loop(fn)
        if site is not None:
            ctx.cite(
                "block.residual_fp32", f"{base.sf.cite(site)} (cast to fp32 before the layers)"
            )
            return True
        break
    return False


def _cast_before_loop(fn: cst.FunctionDef) -> cst.CSTNode | None:
    """The fp32 cast assigned to the name the first layer loop's call reads first, if it is
    the last assignment of that name before the loop."""
    last: dict[str, cst.Assign] = {}
    for statement in fn.body.body:
        if isinstance(statement, cst.For):
            stream = _stream_of(statement)
            assign = last.get(stream) if stream else None
            return assign if assign is not None and upcast(assign.value) else None
        for assign in findall(statement, m.Assign(targets=[m.AssignTarget(target=m.Name())])):
            last[assign.targets[0].target.value] = assign
    return None


def _stream_of(loop: cst.For) -> str | None:
    """The name a call in the loop reads as its first argument and assigns back (`h =
    layer(h, ...)`, `h, state = layer(h, state, ...)`)."""
    for assign in findall(
        loop, m.Assign(value=m.Call(args=[m.Arg(value=m.Name()), m.ZeroOrMore()]))
    ):
        name = assign.value.args[0].value.value
        targets = assign.targets[0].target
        names = [e.value for e in targets.elements] if isinstance(targets, cst.Tuple) else [targets]
        if any(m.matches(n, m.Name(name)) for n in names):
            return name
    return None
