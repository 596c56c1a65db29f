"""Whether an RMSNorm multiplies its weight in fp32 and casts the product last.

Llama's RMSNorm casts the normalised values back to the input dtype before the weight
(`self.weight * hidden_states.to(input_dtype)`); T5-style norms (OLMo-2, flint, gpt-oss)
multiply the weight into the fp32 values and cast the product (`(self.weight *
hidden_states).to(input_dtype)`), also through a local (gemma4: `out = out *
self.weight.float()`, then `return out.type_as(x)`). In bf16 the two round differently, so a
package must do what the checkpoint's norm does. Read from the norm class's `return`.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.walk import findall

_SELF_ATTR = m.Attribute(value=m.Name("self"))
# the weight as is, or taken to fp32 itself (`self.weight.float()`)
_WEIGHT = _SELF_ATTR | m.Call(func=m.Attribute(value=_SELF_ATTR, attr=m.Name("float")))
_PRODUCT = m.BinaryOperation(operator=m.Multiply(), left=_WEIGHT) | m.BinaryOperation(
    operator=m.Multiply(), right=_WEIGHT
)
_CASTS = m.Name("to") | m.Name("type_as")
_CAST_LAST = m.Call(func=m.Attribute(value=_PRODUCT, attr=_CASTS))
# `return <local>.to(...)` / `.type_as(...)`: a cast-last product when the local is one
_CAST_LOCAL = m.Call(func=m.Attribute(value=m.Name(), attr=_CASTS))
# `x.to(input_dtype)` inside the product: rounded before the weight (qwen3_next's gated norm)
_ROUNDED = m.Call(func=m.Attribute(attr=_CASTS))


def weight_in_fp32(ctx, rec: ModuleRec) -> str | None:
    """Where the norm's forward returns `(self.<weight> * x).to(dtype)`, else None."""
    return _cited_return(ctx, rec, cast_last_return)


def _cited_return(ctx, rec: ModuleRec, find) -> str | None:
    """Where the `return` that `find` picks in the norm class's forward is, else None."""
    if rec.cls is None:
        return None
    found = ctx.model.project.find_method(rec.cls, "forward")
    if found is None:
        return None
    owner, forward = found
    ret = find(forward)
    return owner.sf.cite(ret) if ret is not None else None


def cast_last_return(forward: cst.FunctionDef) -> cst.Return | None:
    """The `return` of a norm's forward that casts the weight's fp32 product last, if any."""
    products = {
        target.target.value
        for assign in findall(forward, m.Assign(value=_PRODUCT))
        if not m.findall(assign.value, _ROUNDED)  # the values cast back before the weight
        for target in assign.targets
        if isinstance(target.target, cst.Name)
    }
    for ret in findall(forward, m.Return()):
        if not isinstance(ret.value, cst.BaseExpression):
            continue
        if m.matches(ret.value, _CAST_LAST) or (
            m.matches(ret.value, _CAST_LOCAL) and ret.value.func.value.value in products
        ):
            return ret
    return None


def scale_rounded_return(forward: cst.FunctionDef) -> cst.Return | None:
    """The `return x * <inverse rms>.to(<dtype>)` of a weightless norm's forward (`x` its
    input): the inverse root mean square is rounded to the input's dtype and multiplies the
    input in it (DeepSeek-V4's weightless head norm), not the fp32 values cast last."""
    params = [p for p in forward.params.params if p.name.value != "self"]
    if not params:
        return None
    x = m.Name(params[0].name.value)
    rounded = m.Call(func=m.Attribute(attr=_CASTS))
    product = m.BinaryOperation(operator=m.Multiply(), left=x, right=rounded) | (
        m.BinaryOperation(operator=m.Multiply(), left=rounded, right=x)
    )
    for ret in findall(forward, m.Return()):
        if isinstance(ret.value, cst.BaseExpression) and m.matches(ret.value, product):
            return ret
    return None


def scale_rounded(ctx, rec: ModuleRec) -> str | None:
    """Where a norm's forward returns `x * <inverse rms>.to(<dtype>)`, else None."""
    return _cited_return(ctx, rec, scale_rounded_return)
