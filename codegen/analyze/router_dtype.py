"""Whether a MoE router computes its logits in fp32: the projection's input is upcast first.

The data-flow trace treats casts as pass-through (they keep values), so this reads the source
instead: in the router's forward and the MoE block's forward, a linear projection (`F.linear`,
or a call of the router / one of its Linear children) whose input is cast to float32
(`.float()`, `.type(torch.float32)`, `.to(torch.float32)`, `.to(dtype=torch.float)`, through
reshapes, or a local assigned from such a cast). A cast of the logits *after* a half-precision
projection (`F.linear(x, w).float()`) is not one: the logits were already rounded.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.walk import findall

_FP32 = m.Attribute(value=m.Name("torch"), attr=m.Name("float32") | m.Name("float"))
_CASTS = ("to", "type")
_RESHAPES = ("view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze", "view_as")


def upcast(expr: cst.BaseExpression, locals_: frozenset[str] = frozenset()) -> bool:
    """`expr` is a float32 cast of a tensor (possibly reshaped after), or a name in `locals_`
    (names assigned from such a cast)."""
    if isinstance(expr, cst.Name):
        return expr.value in locals_
    if not (isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute)):
        return False
    method = expr.func.attr.value
    if method == "float" and not expr.args:
        return True
    if method in _CASTS and any(m.matches(a.value, _FP32) for a in expr.args):
        return True
    if method in _RESHAPES:
        return upcast(expr.func.value, locals_)
    return False


def _cast_locals(fn: cst.FunctionDef) -> frozenset[str]:
    """Local names assigned (once or more) from an fp32 cast in `fn`."""
    names: set[str] = set()
    for node in findall(fn, m.Assign(targets=[m.AssignTarget(target=m.Name())])):
        if upcast(node.value, frozenset(names)):
            names.add(node.targets[0].target.value)
    return frozenset(names)


def fp32_projection(fn: cst.FunctionDef, projections: frozenset[str]) -> cst.Call | None:
    """The first call in `fn` that projects an upcast input: `F.linear(<fp32>, ...)` (any
    spelling ending in `linear`) or `self.<p>(<fp32>)` for `p` in `projections`."""
    casts = _cast_locals(fn)
    for call in findall(fn, m.Call()):
        func = call.func
        if not call.args:
            continue
        linear = (isinstance(func, cst.Attribute) and func.attr.value == "linear") or m.matches(
            func, m.Name("linear")
        )
        module = m.matches(func, m.Attribute(value=m.Name("self"))) and (
            func.attr.value in projections
        )
        if (linear or module) and upcast(call.args[0].value, casts):
            return call
    return None


_SIGMOID = m.Call(
    func=m.Attribute(attr=m.Name("sigmoid")) | m.Name("sigmoid"),
)


def half_sigmoid(fn: cst.FunctionDef) -> cst.Call | None:
    """The first sigmoid in `fn` (`x.sigmoid()`, `torch.sigmoid(x)`, `F.sigmoid(x)`) whose
    input is not cast to float32: the scores come out in the logits' dtype (bf16 in a bf16
    model; LFM2-MoE), and a bias added to them in fp32 promotes only the sum."""
    casts = _cast_locals(fn)
    for call in findall(fn, _SIGMOID):
        method = isinstance(call.func, cst.Attribute) and not call.args
        operand = call.func.value if method else (call.args[0].value if call.args else None)
        if operand is None or method and m.matches(operand, m.Name("torch") | m.Name("F")):
            continue
        if not upcast(operand, casts):
            return call
    return None


def half_sigmoid_site(project, classes) -> str | None:
    """file:line of `half_sigmoid` in the forward of the first of `classes` (the router,
    then the MoE block) that has one, else None."""
    for cls in classes:
        found = project.find_method(cls, "forward") if cls is not None else None
        call = half_sigmoid(found[1]) if found else None
        if call is not None:
            return found[0].cite(call)
    return None


def half_activation(site) -> str | None:
    """file:line of the score activation call at `site` (DeepSeek-V4's `score_fn(logits)`,
    or a tensor method: `logits.sigmoid()`) when its input is not cast to float32: the
    scores come out in the logits' dtype, else None."""
    call = getattr(site, "node", None)
    operand = _operand(call) if isinstance(call, cst.Call) else None
    if operand is None:
        return None
    method = site.method if isinstance(site.method, cst.FunctionDef) else None
    casts = _cast_locals(method) if method is not None else frozenset()
    return None if upcast(operand, casts) else site.cite()


# a tensor's own score method (`x.sigmoid()`), called on no namespace of functions
_TENSOR_METHOD = m.Attribute(
    value=~(m.Name("torch") | m.Name("F") | m.Attribute(attr=m.Name("functional"))),
    attr=m.Name("sigmoid") | m.Name("softmax") | m.Name("log_softmax"),
)


def _operand(call: cst.Call) -> cst.BaseExpression | None:
    """The tensor an activation call reads: `f(x, ...)` -> x; a tensor's own method
    (`x.sigmoid()`, `x.softmax(-1)`) -> x."""
    if m.matches(call.func, _TENSOR_METHOD):
        return call.func.value
    positional = [a for a in call.args if a.keyword is None]
    return positional[0].value if positional else None
