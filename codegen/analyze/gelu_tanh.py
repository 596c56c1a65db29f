"""An activation module of the model's own that computes GELU's tanh approximation by hand.

Bloom's MLP calls a module whose forward hands x to an autograd Function, whose forward calls
a helper computing `x * 0.5 * (1 + tanh(0.79788456 * x * (1 + 0.044715 * x * x)))`: GELU
with tanh, written out (with a hand-written backward of the same maths). The tracer does not
follow `Function.apply`, so this reads the source: the module's forward and, through the
calls it makes to functions and classes of the same file (`Cls.apply` meaning `Cls.forward`),
a `tanh` whose argument holds the approximation's two constants, sqrt(2 / pi) and 0.044715.
"""

from __future__ import annotations

import math

import libcst as cst
import libcst.matchers as m

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_CUBIC = 0.044715
_DEPTH = 3  # forward -> Function.apply -> helper


def computes_gelu_tanh(sf, cls) -> bool:
    """Whether `cls` (a ClassInfo of source file `sf`) computes tanh-approximated GELU in its
    forward or in the same file's functions and classes that forward reaches."""
    forward = cls.methods.get("forward")
    return forward is not None and _reaches(sf, forward, _DEPTH, set())


def _reaches(sf, function: cst.FunctionDef, depth: int, seen: set) -> bool:
    if id(function) in seen:
        return False
    seen.add(id(function))
    if any(_is_approximation(call) for call in m.findall(function, m.Call(func=_TANH))):
        return True
    if depth == 0:
        return False
    return any(_reaches(sf, callee, depth - 1, seen) for callee in _callees(sf, function))


# `tanh(...)`, `torch.tanh(...)`, `F.tanh(...)`, `math.tanh(...)`
_TANH = m.Name("tanh") | m.Attribute(attr=m.Name("tanh"))


def _is_approximation(call: cst.Call) -> bool:
    """The tanh's argument holds sqrt(2/pi) (a literal or `math.sqrt(2 / math.pi)`) and
    0.044715."""
    if not call.args:
        return False
    argument = call.args[0].value
    floats = [_float(node) for node in m.findall(argument, m.Float())]
    cubic = any(value is not None and abs(value - _CUBIC) < 1e-6 for value in floats)
    scale = any(value is not None and abs(value - _SQRT_2_OVER_PI) < 1e-6 for value in floats)
    scale = scale or bool(
        m.findall(
            argument,
            m.Call(
                func=m.Name("sqrt") | m.Attribute(attr=m.Name("sqrt")),
                args=[m.Arg(m.BinaryOperation(operator=m.Divide(), right=_PI))],
            ),
        )
    )
    return cubic and scale


_PI = m.Name("pi") | m.Attribute(attr=m.Name("pi"))


def _float(node: cst.Float) -> float | None:
    try:
        return float(node.value)
    except ValueError:
        return None


def _callees(sf, function: cst.FunctionDef) -> list[cst.FunctionDef]:
    """Functions of the file `function` calls by name, and the `forward` of a class of the
    file it calls through `.apply` (an autograd Function) or `.forward`."""
    out = []
    for call in m.findall(function, m.Call()):
        func = call.func
        if isinstance(func, cst.Name) and func.value in sf.functions:
            out.append(sf.functions[func.value])
        elif (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.attr.value in ("apply", "forward")
            and func.value.value in sf.classes
        ):
            method = sf.classes[func.value.value].methods.get("forward")
            if method is not None:
                out.append(method)
    return out
