"""`F if isinstance(F, int) else F[i]`: a value that is one int or a list indexed by a name.

hunyuan_v1_moe writes its router's top-k that way (`config.moe_topk[layer_idx]` unless it is
an int). The switch scan (`switches`) reads such a type test as a config switch with two
settings and the router scan (`layer_top_k`) as a per-layer top-k; both recognise it here, by
the syntax tree alone. A type test whose list branch is not indexed by a name
(`eos_token_id[0]`, a size made a pair) is not this form.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

ISINSTANCE = m.Call(func=m.Name("isinstance"), args=[m.Arg(keyword=None), m.Arg(keyword=None)])
_BY_NAME = m.Subscript(slice=[m.SubscriptElement(m.Index(m.Name()))])


def layer_indexed(node: cst.CSTNode) -> tuple[cst.BaseExpression, cst.Subscript] | None:
    """(the tested value, its indexed read) where `node` is `F if isinstance(F, int) else
    F[i]` or `F[i] if isinstance(F, list) else F` (`tuple`, `(list, tuple)`, `list | tuple`
    too), `i` a name; else None."""
    if not isinstance(node, cst.IfExp) or not m.matches(node.test, ISINSTANCE):
        return None
    tested, kind = (arg.value for arg in node.test.args)
    kinds = type_names(kind)
    if kinds and kinds <= {"int"}:
        whole, indexed = node.body, node.orelse
    elif kinds and kinds <= {"list", "tuple"}:
        indexed, whole = node.body, node.orelse
    else:
        return None
    if whole.deep_equals(tested) and m.matches(indexed, _BY_NAME):
        if indexed.value.deep_equals(tested):
            return tested, indexed
    return None


def type_names(node: cst.CSTNode) -> set[str]:
    """The type names of an isinstance's second argument (`int`, `(list, tuple)`, `list |
    tuple`); empty for anything else."""
    if isinstance(node, cst.Name):
        return {node.value}
    if isinstance(node, cst.Tuple):
        parts = [type_names(e.value) for e in node.elements]
        return set().union(*parts) if parts and all(parts) else set()
    if m.matches(node, m.BinaryOperation(operator=m.BitOr())):
        left, right = type_names(node.left), type_names(node.right)
        return left | right if left and right else set()
    return set()
