"""Whether an RMSNorm multiplies its weight in fp32 and casts the product last.

Llama's RMSNorm casts the normalised values back to the input dtype before the weight
(`self.weight * hidden_states.to(input_dtype)`); T5-style norms (OLMo-2, flint, gpt-oss)
multiply the weight into the fp32 values and cast the product (`(self.weight *
hidden_states).to(input_dtype)`). In bf16 the two round differently, so a package must do
what the checkpoint's norm does. Read from the norm class's `return`.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.walk import findall

_WEIGHT = m.Attribute(value=m.Name("self"))
_PRODUCT = m.BinaryOperation(operator=m.Multiply(), left=_WEIGHT) | m.BinaryOperation(
    operator=m.Multiply(), right=_WEIGHT
)
_CAST_LAST = m.Call(func=m.Attribute(value=_PRODUCT, attr=m.Name("to")))


def weight_in_fp32(ctx, rec: ModuleRec) -> str | None:
    """Where the norm's forward returns `(self.<weight> * x).to(dtype)`, else None."""
    if rec.cls is None:
        return None
    found = ctx.model.project.find_method(rec.cls, "forward")
    if found is None:
        return None
    owner, forward = found
    for ret in findall(forward, m.Return()):
        if isinstance(ret.value, cst.BaseExpression) and m.matches(ret.value, _CAST_LAST):
            return owner.sf.cite(ret)
    return None
