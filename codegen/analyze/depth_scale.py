"""A depth-scaled residual sum: `x = sublayer * 1/sqrt(k) + x * sqrt((k - 1) / k)`.

The residual stream is read as a running sum whose k-th term (the embedding is the first,
then each sublayer's output in turn: k = n * i + j + 2 for sublayer j of n in layer i) is
weighted so the sum keeps the scale of one term. Both factors are numbers of the layer
index alone, so the static trace holds them as constants in every layer: the form is
recognised when every traced layer's two factors per sublayer are those of its k, not by
any name (the helper function, the attributes holding k).
"""

from __future__ import annotations

import math

from codegen.analyze.dataflow import Term, walk

# how many layers are traced to confirm the form (each has its own k)
LAYERS_CHECKED = 3


def factors(facts: dict, label: str) -> tuple[float, float] | None:
    """(sublayer factor, stream factor) of the residual sum `label`'s sublayer enters, when
    the sum is `sublayer * a + stream * b` with numbers a and b; else None."""
    found = facts.get(label)
    add = found.get("add") if isinstance(found, dict) else None
    if not isinstance(add, Term) or add.op != "add" or len(add.args) != 2:
        return None
    call = found["call"]
    out = stream = None
    for operand in add.args:
        scaled = _scaled(operand)
        if scaled is None:
            return None
        term, number = scaled
        if any(x is call for x in walk(term)):
            out = number
        else:
            stream = number
    if out is None or stream is None:
        return None
    return out, stream


def is_depth_scaled(layer_facts: list[dict]) -> bool:
    """Every sublayer of every layer in `layer_facts` (layers 0, 1, ... in order) enters a
    depth-scaled sum: factors 1/sqrt(k) and sqrt((k - 1) / k) for its own k."""
    if not layer_facts:
        return False
    labels = [
        label for label in ("attention", "mlp") if isinstance(layer_facts[0].get(label), dict)
    ]
    for i, facts in enumerate(layer_facts):
        for j, label in enumerate(labels):
            found = factors(facts, label)
            if found is None:
                return False
            k = len(labels) * i + j + 2
            if not (
                _close(found[0], 1 / math.sqrt(k)) and _close(found[1], math.sqrt((k - 1) / k))
            ):
                return False
    return True


def _scaled(term) -> tuple[Term, float] | None:
    """`x * c` or `c * x` with c a number -> (x, c)."""
    if not (isinstance(term, Term) and term.op == "mul" and len(term.args) == 2):
        return None
    left, right = term.args
    if _number(right) and isinstance(left, Term):
        return left, float(right)
    if _number(left) and isinstance(right, Term):
        return right, float(left)
    return None


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))
