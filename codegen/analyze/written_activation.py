"""Which activation a function written out in the analysed sources computes.

Remote code may write its activation by hand (`def own_swish(x): return x * torch.sigmoid(x)`).
Inlined, such a function is a small elementwise expression of its one tensor input; naming it
after the first or last op inside (`sigmoid`) would build a different model. The expression is
read by what it computes: evaluated on a few sample points with the elementwise ops it is made
of, and compared with the activations the package vocabulary knows. A written-out function
whose values match none of them is not an activation the package can run (`None`). A module
class of the analysed sources whose forward is such an expression (`self.act = OwnAct()`,
or picked from a model-local table) is read the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from codegen.analyze.dataflow import Term, terms_in

_SAMPLES = (-3.1, -1.3, -0.45, -0.05, 0.2, 0.9, 2.5, 4.2)
_TOLERANCE = 1e-6


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _gelu_tanh(x: float) -> float:
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# the activation names the analysis reports (HF ACT2FN names), by what each computes
KNOWN: dict[str, Callable[[float], float]] = {
    "silu": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "gelu_new": _gelu_tanh,
    "quick_gelu": lambda x: x * _sigmoid(1.702 * x),
    "relu2": lambda x: max(x, 0.0) ** 2,
    "relu": lambda x: max(x, 0.0),
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
}

# activation names an `act` term (ACT2FN[...]) or a torch function may carry -> its values
_NAMED: dict[str, Callable[[float], float]] = {
    **KNOWN,
    "swish": KNOWN["silu"],
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "relu6": lambda x: min(max(x, 0.0), 6.0),
    "softplus": lambda x: math.log1p(math.exp(x)),
    "erf": math.erf,
    "exp": math.exp,
    "log1p": math.log1p,
    "sqrt": math.sqrt,
    "rsqrt": lambda x: 1.0 / math.sqrt(x),
    "abs": abs,
    "square": lambda x: x * x,
    "reciprocal": lambda x: 1.0 / x,
    "neg": lambda x: -x,
}

# ops that make an elementwise expression nonlinear: a function holding one is an activation
NONLINEAR = frozenset(_NAMED) - {"neg", "abs", "square", "reciprocal", "sqrt", "rsqrt"}
# casts and copies: the same values
_SAME = frozenset({"float", "to", "type_as", "half", "bfloat16", "contiguous", "clone"})
_BINARY: dict[str, Callable[[float, float], float]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}


class _NotElementwise(Exception):
    """The expression holds something other than elementwise ops of its input and numbers."""


def _value(term, source: Term, x: float, ops: set) -> float:
    if term is source:
        return x
    if isinstance(term, bool) or not isinstance(term, int | float | Term):
        raise _NotElementwise
    if not isinstance(term, Term):
        return float(term)
    name = _op_name(term)
    ops.add(name)
    args = [a for a in term.args if a is not None]
    if name in _BINARY and len(args) == 2 and not term.kwargs:
        a, b = (_value(v, source, x, ops) for v in args)
        return _BINARY[name](a, b)
    if name in _SAME and args:
        return _value(args[0], source, x, ops)
    if name == "gelu" and term.kwargs.get("approximate") == "tanh" and len(args) == 1:
        return _gelu_tanh(_value(args[0], source, x, ops))
    if name in _NAMED and len(args) == 1 and not term.kwargs:
        return _NAMED[name](_value(args[0], source, x, ops))
    if name == "neg" and len(args) == 1:
        return -_value(args[0], source, x, ops)
    raise _NotElementwise


def _op_name(term: Term) -> str:
    if term.op == "act":
        return str(getattr(term.module, "name", ""))
    if term.op == "fn":
        return term.name.rsplit(".", 1)[-1]
    return term.op


def values(term: Term, source: Term) -> tuple[list[float], set] | None:
    """`term` evaluated at the sample points as a function of `source`, and the ops it is made
    of; None where it is not an elementwise expression of `source` and numbers alone."""
    out, ops = [], set()
    for x in _SAMPLES:
        try:
            out.append(_value(term, source, x, ops))
        except _NotElementwise:
            return None
        except (ArithmeticError, ValueError):
            out.append(math.nan)
    return out, ops


def written_activation(term: Term, source: Term) -> str | None:
    """The known activation `term` computes from `source`, else None."""
    found = values(term, source)
    if found is None:
        return None
    got = found[0]
    for name, fn in KNOWN.items():
        want = [fn(x) for x in _SAMPLES]
        if all(
            math.isclose(a, b, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE)
            for a, b in zip(got, want, strict=True)
        ):
            return name
    return None


def is_activation_shaped(term: Term, source: Term) -> bool:
    """`term` is an elementwise expression of `source` holding a nonlinear op (a written-out
    activation, known or not)."""
    found = values(term, source)
    return found is not None and bool(found[1] & NONLINEAR)


def body_of(term: Term, source: Term) -> set[int]:
    """The ids of the terms computed between `source` and `term` (both excluded)."""
    out: set[int] = set()
    stack = [term]
    while stack:
        t = stack.pop()
        if t is source or id(t) in out:
            continue
        if t is not term:
            out.add(id(t))
        for a in [*t.args, *t.kwargs.values()]:
            stack.extend(terms_in(a))
    return out
