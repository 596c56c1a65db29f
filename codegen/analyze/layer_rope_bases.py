"""A RoPE base read per layer from a config list.

Some backbones build one rotary table per distinct entry of a config list and hand each
layer the table of its own entry: `for base in sorted({b for b in config.<list>}): ...
{**config.rope_parameters, "rope_theta": base}` (a copy of the rope parameters with the
base swapped). A package that builds one table from `rope_parameters` computes another
model as soon as the entries differ, so the field and the rope parameter it overrides are
recorded, read by structure: a loop (or comprehension) over a config field whose variable
is the value of the base key in a dict built in the loop.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.walk import findall

BASE_KEY = "rope_theta"  # the rope_parameters key of the rotary base


def layer_bases(ctx: Ctx) -> dict | None:
    """{"field": the config list of per-layer bases, "base": the config value each entry
    replaces (`rope_parameters.rope_theta`)}, cited as `rope.layer_bases`; None where the
    backbone reads no base per layer. Where the copy with the base swapped is taken from
    `rope_parameters` nested per layer type (`{**config.rope_parameters[t], ...}`, `t` an
    entry of a config list), also "types": that list, and "base" names the type's entry."""
    owner = ctx.model.stack_owner or ctx.model.entry
    info = getattr(owner, "cls", None)
    if info is None:
        return None
    for method in info.methods.values():
        found = _swapped_base(method)
        if found is None:
            continue
        fact, node = found
        in_place_of = fact["base"]
        if "types" in fact:
            in_place_of += f", the layer type an entry of config:{fact['types']}"
        ctx.cite(
            "rope.layer_bases",
            f"{info.cite(node)} (each layer's RoPE base: an entry of config:{fact['field']},"
            f" in place of {in_place_of})",
        )
        return fact
    return None


def _swapped_base(method) -> tuple[dict, cst.CSTNode] | None:
    """The fact and the dict of `method` that sets the base key to a variable bound to the
    entries of a config list by a loop or comprehension of `method`."""
    bound = _bindings(method)
    for mapping in findall(method, m.Dict()):
        for element in mapping.elements:
            if (
                isinstance(element, cst.DictElement)
                and isinstance(element.key, cst.SimpleString)
                and element.key.evaluated_value == BASE_KEY
                and isinstance(element.value, cst.Name)
                and element.value.value in bound
            ):
                fact = {"field": bound[element.value.value], "base": BASE_KEY}
                spread = [
                    e.value for e in mapping.elements if isinstance(e, cst.StarredDictElement)
                ]
                if spread:
                    fact.update(_spread_base(spread[0], bound))
                return fact, mapping
    return None


def _spread_base(spread: cst.BaseExpression, bound: dict[str, str]) -> dict:
    """ "base" (and "types") of the dict spread beside the base key: `config.<holder>` ->
    `<holder>.rope_theta`; `config.<holder>[t]`, `t` bound to a config list's entries ->
    `<holder>[<layer type>].rope_theta` and that list; another index -> named as written."""
    index = subscripted = None
    if isinstance(spread, cst.Subscript):
        subscripted = spread.slice
        index = getattr(spread.slice[0].slice, "value", None) if len(spread.slice) == 1 else None
        spread = spread.value
    holders = _config_reads(spread)
    if not holders:
        return {}
    if subscripted is None:
        return {"base": f"{holders[0]}.{BASE_KEY}"}
    if isinstance(index, cst.Name) and index.value in bound:
        return {"base": f"{holders[0]}[<layer type>].{BASE_KEY}", "types": bound[index.value]}
    written = cst.Module([]).code_for_node(index) if index is not None else "?"
    return {"base": f"{holders[0]}[{written}].{BASE_KEY}"}


def _bindings(method) -> dict[str, str]:
    """{variable: config list} for the variables of `method`'s loops and comprehensions
    that run over a config list's entries (`for b in config.x`, `for t, b in
    zip(config.y, config.x)`, `for b in sorted({...})`, or an attribute assigned that)."""
    bound: dict[str, str] = {}
    for loop in findall(method, m.For() | m.CompFor()):
        names = _target_names(loop.target)
        fields = _entry_fields(method, loop.iter)
        if names is None:
            continue
        if fields is None or len(fields) != len(names):
            # a variable over whatever the loop reads first from the config (as before)
            reads = _config_reads(loop.iter) if len(names) == 1 else []
            fields = reads[:1]
        for name, field in zip(names, fields, strict=False):
            if name is not None and field is not None:
                bound.setdefault(name, field)
    return bound


def _target_names(target) -> list[str | None] | None:
    """`b` -> ["b"]; `t, b` / `(t, b)` -> ["t", "b"] (a nested target: None there)."""
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, cst.Tuple | cst.List):
        return [e.value.value if isinstance(e.value, cst.Name) else None for e in target.elements]
    return None


_WRAPPERS = ("sorted", "set", "list", "tuple", "frozenset", "reversed")


def _entry_fields(method, node, depth: int = 0) -> list[str | None] | None:
    """What each position of an element of the iterable `node` is an entry of: [field] for
    a config list, one per argument of a `zip`, through `sorted`/`set`/... and the element
    of a comprehension; an attribute of `self` through its assignment in `method`."""
    if depth > 8:
        return None
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name):
        if node.func.value in _WRAPPERS and node.args:
            return _entry_fields(method, node.args[0].value, depth + 1)
        if node.func.value == "zip":
            columns = [_entry_fields(method, a.value, depth + 1) for a in node.args]
            return [c[0] if c and len(c) == 1 else None for c in columns]
        return None
    field = _config_field(node)
    if field is not None:
        return [field]
    if isinstance(node, cst.Attribute) and m.matches(node.value, m.Name("self")):
        assigned = _assigned_value(method, node.attr.value)
        return None if assigned is None else _entry_fields(method, assigned, depth + 1)
    if isinstance(node, cst.ListComp | cst.SetComp | cst.GeneratorExp):
        comp = node.for_in
        names = _target_names(comp.target)
        fields = _entry_fields(method, comp.iter, depth + 1)
        if comp.inner_for_in is not None or names is None or fields is None:
            return None
        if len(names) != len(fields):
            return None
        inner = dict(zip(names, fields, strict=True))
        elt = node.elt
        elements = [e.value for e in elt.elements] if isinstance(elt, cst.Tuple) else [elt]
        return [inner.get(e.value) if isinstance(e, cst.Name) else None for e in elements]
    return None


def _assigned_value(method, attribute: str) -> cst.BaseExpression | None:
    """The value of the one `self.<attribute> = ...` of `method`."""
    target = m.AssignTarget(target=m.Attribute(value=m.Name("self"), attr=m.Name(attribute)))
    found = [a for a in findall(method, m.Assign()) if any(m.matches(t, target) for t in a.targets)]
    return found[0].value if len(found) == 1 else None


def _config_field(node: cst.CSTNode) -> str | None:
    """`<field>` of a node that is exactly `config.<field>` or `self.config.<field>`."""
    if not isinstance(node, cst.Attribute):
        return None
    holder = node.value
    if m.matches(holder, m.Attribute(value=m.Name("self"), attr=m.Name("config"))):
        return node.attr.value
    return node.attr.value if m.matches(holder, m.Name("config")) else None


def _config_reads(node: cst.CSTNode) -> list[str]:
    """Fields read as `config.<field>` or `self.config.<field>` in `node`, in order."""
    found = []
    for attribute in findall(node, m.Attribute()):
        value = attribute.value
        if isinstance(value, cst.Attribute) and isinstance(value.value, cst.Name):
            value = value.attr if value.value.value == "self" else None
        if isinstance(value, cst.Name) and value.value == "config":
            found.append(attribute.attr.value)
    return found
