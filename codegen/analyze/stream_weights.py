"""A learned per-channel weight on the residual stream: `x = w * x + sublayer(...)`.

Each sublayer's residual add takes its sublayer's output as it is and the stream times a
parameter of the layer (one value per channel, a vector of the hidden size). Recognised
when both residual adds of a layer have that shape; the parameters are named by the layer
attribute holding them (so the package maps their checkpoint keys), never by a guess.
"""

from __future__ import annotations

from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec, ParamRec

LABELS = ("attention", "mlp")


def read(layer: ModuleRec, facts: dict) -> tuple[str, str] | None:
    """(attribute weighting the stream before the attention's add, before the FFN's add)
    of `layer`, from its placement `facts`; None for any other form."""
    names = []
    for label in LABELS:
        found = facts.get(label)
        add = found.get("add") if isinstance(found, dict) else None
        if not isinstance(add, Term) or add.op != "add" or len(add.args) != 2:
            return None
        call = found["call"]
        weights = [a for a in add.args if not any(x is call for x in walk(a))]
        outputs = [a for a in add.args if any(x is call for x in walk(a))]
        if len(weights) != 1 or len(outputs) != 1 or _weight(outputs[0]) is not None:
            return None
        param = _weight(weights[0])
        name = _attribute(layer, param)
        if name is None:
            return None
        names.append(name)
    return tuple(names) if len(set(names)) == 2 else None


def _weight(term) -> ParamRec | None:
    """The parameter `p` of `p * x` / `x * p` (a vector of one value per channel)."""
    if not (isinstance(term, Term) and term.op == "mul" and len(term.args) == 2):
        return None
    params = [
        a.module
        for a in term.args
        if isinstance(a, Term) and a.op == "param" and isinstance(a.module, ParamRec)
    ]
    if len(params) != 1 or params[0].kind != "parameter" or len(params[0].shape) != 1:
        return None
    return params[0]


def _attribute(layer: ModuleRec, param: ParamRec | None) -> str | None:
    if param is None:
        return None
    found = [name for name, value in layer.attrs.items() if value is param]
    return found[0] if len(found) == 1 else None
