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
    backbone reads no base per layer."""
    owner = ctx.model.stack_owner or ctx.model.entry
    info = getattr(owner, "cls", None)
    if info is None:
        return None
    for method in info.methods.values():
        for loop in findall(method, m.For() | m.CompFor()):
            found = _base_of_loop(method, loop)
            if found is not None:
                field, base, node = found
                ctx.cite(
                    "rope.layer_bases",
                    f"{info.cite(node)} (each layer's RoPE base: an entry of config:{field},"
                    f" in place of {base})",
                )
                return {"field": field, "base": base}
    return None


def _base_of_loop(method, loop) -> tuple[str, str, cst.CSTNode] | None:
    """(field, base, dict) where `loop` iterates over a config field and its variable is
    the base key's value of a dict in `method` (the loop's body or the comprehension)."""
    if not isinstance(loop.target, cst.Name):
        return None
    fields = _config_reads(loop.iter)
    if not fields:
        return None
    variable = loop.target.value
    scope = loop.body if isinstance(loop, cst.For) else method
    for mapping in findall(scope, m.Dict()):
        for element in mapping.elements:
            if (
                isinstance(element, cst.DictElement)
                and isinstance(element.key, cst.SimpleString)
                and element.key.evaluated_value == BASE_KEY
                and isinstance(element.value, cst.Name)
                and element.value.value == variable
            ):
                spread = [
                    e.value for e in mapping.elements if isinstance(e, cst.StarredDictElement)
                ]
                holders = [f for s in spread for f in _config_reads(s)]
                base = f"{holders[0]}.{BASE_KEY}" if holders else BASE_KEY
                return fields[0], base, mapping
    return None


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
