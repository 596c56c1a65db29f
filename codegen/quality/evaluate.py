"""Static values of the small expressions conditions are made of.

`value` folds literals, tuples, `not`/`and`/`or`, comparisons, arithmetic and
`tuple()`/`len()`/`bool()` of known values; names and attributes are asked of `lookup`
(a ModelArgs field every accepted config pins, say). Anything else is `UNKNOWN`. `truth`
is the boolean a condition takes, which is sometimes known when its value is not
(`x and False`, `i not in ()`).

Integer arithmetic is assumed where an unknown operand meets `% 1` (layer indices), the one
identity beyond plain constant folding.

A sequence of unknown length can still be known element-wise: `["full_attention"] *
hf_config.num_hidden_layers` is `Items({"full_attention"})`, whose entries are all
"full_attention". Membership (`"sliding_attention" in items`), indexing (`items[i]` when
every entry is one value), `tuple()`/`list()` and `a or b` of two such keep what is known.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libcst as cst


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
Lookup = Callable[[cst.BaseExpression], Any]


@dataclass(frozen=True)
class Items:
    """A tuple or list of unknown length (maybe empty) whose every entry is in `values`."""

    values: frozenset

    def __bool__(self):
        raise TypeError("the truth of a sequence of unknown length is unknown")

    def __repr__(self) -> str:
        return f"Items({sorted(self.values, key=repr)!r})"


def _items(known: Any) -> Items | None:
    """`known` as Items: a known tuple or list of hashable entries, or Items itself."""
    if isinstance(known, Items):
        return known
    if isinstance(known, (tuple, list)):
        try:
            return Items(frozenset(known))
        except TypeError:
            return None
    return None


_CONSTANT_NAMES = {"True": True, "False": False, "None": None}
_COMPARE = {
    cst.Equal: operator.eq,
    cst.NotEqual: operator.ne,
    cst.LessThan: operator.lt,
    cst.LessThanEqual: operator.le,
    cst.GreaterThan: operator.gt,
    cst.GreaterThanEqual: operator.ge,
    cst.In: lambda a, b: a in b,
    cst.NotIn: lambda a, b: a not in b,
}
_ARITHMETIC = {
    cst.Add: operator.add,
    cst.Subtract: operator.sub,
    cst.Multiply: operator.mul,
    cst.FloorDivide: operator.floordiv,
    cst.Modulo: operator.mod,
}
_BUILTINS = {"tuple": tuple, "len": len, "bool": bool}


def _no_lookup(node: cst.BaseExpression) -> Any:
    return UNKNOWN


def value(node: cst.BaseExpression, lookup: Lookup = _no_lookup) -> Any:
    """The value `node` has whenever it runs, or UNKNOWN."""
    if isinstance(node, cst.Name):
        if node.value in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[node.value]
        return lookup(node)
    if isinstance(node, cst.Attribute):
        return lookup(node)
    if isinstance(node, (cst.Integer, cst.Float, cst.SimpleString)):
        return node.evaluated_value
    if isinstance(node, (cst.Tuple, cst.List)):
        items = []
        for element in node.elements:
            if not isinstance(element, cst.Element):
                return UNKNOWN
            items.append(value(element.value, lookup))
        if any(item is UNKNOWN for item in items):
            return UNKNOWN
        return tuple(items) if isinstance(node, cst.Tuple) else items
    if isinstance(node, cst.UnaryOperation):
        if isinstance(node.operator, cst.Not):
            known = truth(node.expression, lookup)
            return UNKNOWN if known is UNKNOWN else not known
        operand = value(node.expression, lookup)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            if isinstance(node.operator, cst.Minus):
                return -operand
            if isinstance(node.operator, cst.Plus):
                return operand
        return UNKNOWN
    if isinstance(node, cst.BooleanOperation):
        left = value(node.left, lookup)
        if left is UNKNOWN:
            return UNKNOWN
        if isinstance(left, Items):  # either side may be the value: what both have in common
            right = _items(value(node.right, lookup))
            return UNKNOWN if right is None else Items(left.values | right.values)
        if isinstance(node.operator, cst.And):
            return value(node.right, lookup) if left else left
        return left if left else value(node.right, lookup)
    if isinstance(node, cst.Comparison):
        return _compare(node, lookup)
    if isinstance(node, cst.BinaryOperation):
        return _arithmetic(node, lookup)
    if isinstance(node, cst.IfExp):
        test = truth(node.test, lookup)
        if test is UNKNOWN:
            return UNKNOWN
        return value(node.body if test else node.orelse, lookup)
    if isinstance(node, cst.Call):
        return _call(node, lookup)
    if isinstance(node, cst.Subscript):
        return _subscript(node, lookup)
    return UNKNOWN


def _subscript(node: cst.Subscript, lookup: Lookup) -> Any:
    """`items[i]` where every entry is one value (an index out of range raises anyway)."""
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
        return UNKNOWN
    base = value(node.value, lookup)
    if isinstance(base, Items) and len(base.values) == 1:
        return next(iter(base.values))
    return UNKNOWN


def truth(node: cst.BaseExpression, lookup: Lookup = _no_lookup) -> Any:
    """True/False when `node` as a condition always takes that branch, else UNKNOWN."""
    if isinstance(node, cst.BooleanOperation):
        left, right = truth(node.left, lookup), truth(node.right, lookup)
        deciding = not isinstance(node.operator, cst.And)  # False decides `and`, True `or`
        if deciding in (left, right):
            return deciding
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        return not deciding
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
        known = truth(node.expression, lookup)
        return UNKNOWN if known is UNKNOWN else not known
    known = value(node, lookup)
    if known is UNKNOWN:
        return UNKNOWN
    try:
        return bool(known)
    except Exception:  # noqa: BLE001 - a value without a truth value decides nothing
        return UNKNOWN


def _compare(node: cst.Comparison, lookup: Lookup) -> Any:
    left = value(node.left, lookup)
    outcome: Any = True
    for target in node.comparisons:
        right = value(target.comparator, lookup)
        step = _compare_one(target.operator, left, right)
        if step is False:
            return False  # a chain fails at its first false link
        if step is UNKNOWN:
            outcome = UNKNOWN
        left = right
    return outcome


def _compare_one(op: cst.BaseCompOp, left: Any, right: Any) -> Any:
    if isinstance(op, (cst.In, cst.NotIn)) and isinstance(right, (tuple, list)) and not right:
        return isinstance(op, cst.NotIn)  # nothing is in an empty container
    if isinstance(left, Items) or isinstance(right, Items):
        if isinstance(op, (cst.In, cst.NotIn)) and isinstance(right, Items):
            if left is not UNKNOWN and not isinstance(left, Items):
                try:
                    if left not in right.values:
                        return isinstance(op, cst.NotIn)
                except TypeError:
                    return UNKNOWN
        return UNKNOWN  # present, or a comparison of the whole sequence: not known
    if left is UNKNOWN or right is UNKNOWN:
        return UNKNOWN
    if isinstance(op, (cst.Is, cst.IsNot)):
        if not any(v is None or isinstance(v, bool) for v in (left, right)):
            return UNKNOWN  # identity of numbers and strings is not a language guarantee
        same = left is right
        return same if isinstance(op, cst.Is) else not same
    compare = _COMPARE.get(type(op))
    if compare is None:
        return UNKNOWN
    try:
        return bool(compare(left, right))
    except TypeError:
        return UNKNOWN


def _arithmetic(node: cst.BinaryOperation, lookup: Lookup) -> Any:
    left, right = value(node.left, lookup), value(node.right, lookup)
    if isinstance(node.operator, cst.Modulo) and right == 1 and not isinstance(right, float):
        return 0  # integer operands (layer indices): anything % 1 == 0
    if isinstance(node.operator, cst.Multiply):  # `[x] * n`: n copies of what is known
        for sequence, count in ((left, right), (right, left)):
            items = _items(sequence)
            if items is not None and (count is UNKNOWN or isinstance(sequence, Items)):
                if count is UNKNOWN or (isinstance(count, int) and not isinstance(count, bool)):
                    return items
    if isinstance(left, Items) or isinstance(right, Items):
        return UNKNOWN
    compute = _ARITHMETIC.get(type(node.operator))
    if compute is None or left is UNKNOWN or right is UNKNOWN:
        return UNKNOWN
    try:
        return compute(left, right)
    except (TypeError, ZeroDivisionError):
        return UNKNOWN


def _call(node: cst.Call, lookup: Lookup) -> Any:
    if not (isinstance(node.func, cst.Name) and node.func.value in _BUILTINS):
        return UNKNOWN
    if len(node.args) != 1 or node.args[0].keyword is not None or node.args[0].star:
        return UNKNOWN
    argument = value(node.args[0].value, lookup)
    if argument is UNKNOWN:
        return UNKNOWN
    if isinstance(argument, Items):  # a copy has the same entries; its length is unknown
        return argument if node.func.value == "tuple" else UNKNOWN
    try:
        return _BUILTINS[node.func.value](argument)
    except TypeError:
        return UNKNOWN
