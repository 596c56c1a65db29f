"""Logn attention: queries multiplied by 1 + beta * log(1 + floor((pos + offset) / period)).

Ministral3 and Llama4 scale the rotated queries by a factor that grows with the log of the
position, in blocks of `period` positions. The traced multiplier is read as that form (log of
1 + x or log1p of x, the constant 1 on either side, beta on either side of the product),
its constants evaluated under the analysed config; each constant is then named by the config
read of the attention's forward holding that value (a field or a `rope_parameters` key), so a
package reads the same fields. A form that does not parse, or a constant no single read of
the forward holds, is None.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.dataflow import Term
from codegen.analyze.walk import findall

_LOG = ("log", "log1p")


def positions_of(scale) -> str | None:
    """What the multiplier counts: `ids` (the position ids the layer is given) or `index`
    (the token's index in the sequence, `arange(seq)`: Llama4); None if it does not parse."""
    parsed = _parse(scale)
    return parsed[1] if parsed is not None else None


def parse(scale) -> tuple[float, float, float] | None:
    """(beta, period, offset) of a traced multiplier, or None."""
    parsed = _parse(scale)
    return parsed[0] if parsed is not None else None


def _parse(scale):
    scale = _unwrap(scale)
    rest = _plus_constant(scale, 1)
    if rest is None or rest.op != "mul":
        return None
    beta, log = _split_constant(rest)
    if beta is None or log.op != "fn" or log.name.rsplit(".", 1)[-1] not in _LOG:
        return None
    inner = _unwrap(log.args[0]) if log.args else None
    if log.name.endswith("log"):
        inner = _plus_constant(inner, 1)
    if inner is None or inner.op != "fn" or not inner.name.endswith("floor") or not inner.args:
        return None
    div = _unwrap(inner.args[0])
    if not (isinstance(div, Term) and div.op == "div" and _number(div.args[1])):
        return None
    found = _offset_positions(div.args[0])
    if found is None:
        return None
    offset, kind = found
    return (float(beta), float(div.args[1]), offset), kind


def parse_power(scale) -> tuple[float, float, float, str] | None:
    """(exponent, period, offset, positions) of a multiplier `(1 + (pos + offset) / period) **
    exponent`, written `exp(exponent * log1p((pos + offset) / period))` or as the power
    itself; positions `ids` or `index` as in `positions_of`; None for any other form."""
    scale = _unwrap(scale)
    if not isinstance(scale, Term):
        return None
    if scale.op == "fn" and scale.name.rsplit(".", 1)[-1] == "exp" and scale.args:
        product = _unwrap(scale.args[0])
        if not (isinstance(product, Term) and product.op == "mul"):
            return None
        exponent, log = _split_constant(product)
        if exponent is None or not (isinstance(log, Term) and log.op == "fn"):
            return None
        if log.name.rsplit(".", 1)[-1] == "log1p" and log.args:
            ratio = _unwrap(log.args[0])
        elif log.name.rsplit(".", 1)[-1] == "log" and log.args:
            ratio = _plus_constant(_unwrap(log.args[0]), 1)
        else:
            return None
    elif scale.op == "pow" and len(scale.args) == 2 and _number(scale.args[1]):
        exponent, ratio = scale.args[1], _plus_constant(_unwrap(scale.args[0]), 1)
    else:
        return None
    if not (isinstance(ratio, Term) and ratio.op == "div" and _number(ratio.args[1])):
        return None
    found = _offset_positions(ratio.args[0])
    if found is None:
        return None
    offset, kind = found
    return float(exponent), float(ratio.args[1]), offset, kind


def config_field(value: float, reads: dict[str, object]) -> str | None:
    """The one config read among `reads` (expression -> value, see `config_reads`) that
    holds `value`, else None."""
    found = [expression for expression, held in reads.items() if _equal(held, value)]
    return found[0] if len(found) == 1 else None


def config_reads(config, *nodes: cst.CSTNode) -> dict[str, object]:
    """The config values `nodes` read, keyed by the package's expression for them:
    `config.<field>` / `self.config.<field>` -> `hf_config.<field>`, and a `rope_parameters`
    key read with `.get("k")` or `["k"]` -> `hf_config.rope_parameters["k"]`. (Reads
    through attributes `__init__` set, Llama4's `self.floor_scale`, are not followed yet.)"""
    attrs = getattr(config, "attrs", {})
    rope = attrs.get("rope_parameters") if isinstance(attrs.get("rope_parameters"), dict) else {}
    reads: dict[str, object] = {}
    for node in nodes:
        for key in findall(node, _ROPE_KEY):
            name = _rope_key(key)
            if name is not None and name in rope:
                reads[f'hf_config.rope_parameters["{name}"]'] = rope[name]
        for read in findall(node, _FIELD):
            if read.attr.value in attrs and read.attr.value != "rope_parameters":
                reads[f"hf_config.{read.attr.value}"] = attrs[read.attr.value]
    return reads


# `<...>.rope_parameters.get("k")` and `<...>.rope_parameters["k"]`
_PARAMS = m.Attribute(attr=m.Name("rope_parameters"))
_ROPE_KEY = m.Call(
    func=m.Attribute(value=_PARAMS, attr=m.Name("get")),
    args=[m.Arg(m.SimpleString()), m.ZeroOrMore()],
) | m.Subscript(value=_PARAMS)
# `config.<field>`, `self.config.<field>`
_FIELD = m.Attribute(value=m.Name("config") | m.Attribute(attr=m.Name("config")))


def _rope_key(node) -> str | None:
    if isinstance(node, cst.Call):
        return node.args[0].value.evaluated_value
    element = node.slice[0].slice if len(node.slice) == 1 else None
    if isinstance(element, cst.Index) and isinstance(element.value, cst.SimpleString):
        return element.value.evaluated_value
    return None


def _equal(held, value: float) -> bool:
    return _number(held) and abs(float(held) - value) <= 1e-9 * max(1.0, abs(value))


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unwrap(term):
    """Through indexing that only adds axes (`[:, None, :, None]`) and value-keeping casts."""
    while isinstance(term, Term) and term.op == "index" and term.args:
        if any(part.strip(":") not in ("", "None", "...") for part in term.name.split(",")):
            break
        term = term.args[0]
    return term


def _plus_constant(term, constant: float):
    """`constant + x` or `x + constant` -> x."""
    if not (isinstance(term, Term) and term.op == "add" and len(term.args) >= 2):
        return None
    left, right = term.args[:2]
    if _number(left) and float(left) == constant:
        return _unwrap(right)
    if _number(right) and float(right) == constant:
        return _unwrap(left)
    return None


def _split_constant(term: Term):
    """`c * x` or `x * c` -> (c, x); (None, None) when neither side is a number."""
    left, right = term.args[:2]
    if _number(left) and isinstance(right, Term):
        return left, _unwrap(right)
    if _number(right) and isinstance(left, Term):
        return right, _unwrap(left)
    return None, None


def _offset_positions(node) -> tuple[float, str] | None:
    """(offset, "ids" | "index") of `positions [+ offset]`: the position ids as given, or an
    `arange` over the sequence (`arange(n) + past_seen_tokens` with no cache); else None."""
    positions, offset = _unwrap(node), 0.0
    if isinstance(positions, Term) and positions.op == "add":
        left, right = positions.args[:2]
        constant, positions = (left, right) if _number(left) else (right, left)
        if not _number(constant):
            return None
        offset, positions = float(constant), _unwrap(positions)
    if isinstance(positions, Term) and positions.op == "input":
        return offset, "ids"
    zero = _plus_constant(positions, 0)
    positions = _unwrap(zero) if zero is not None else positions
    if isinstance(positions, Term) and positions.op == "fn" and positions.name.endswith("arange"):
        return offset, "index"
    return None
