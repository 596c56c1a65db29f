"""Block attention residuals: each sublayer's input an attention over earlier states.

Read from structure, never from names. A module of role `depth` (roles.depth_attention: an
attention whose only parameter is a learned query, one vector or a row per query, beside at
most a weightless norm) is called with a stack of states and the current one; the layer
appends its input to that stack on the layers a config field marks as block boundaries
(`self.<flag> = layer_idx % config.<field> == 0`), the backbone does the same after each such
layer, and one more such module of the backbone reads the stack before the final norm
(inkling2). The fact is a dict:

* `layer`: the layer's depth modules by attribute, each with its query counts (inkling2's
  full layers read queries, keys and values apart: 3) and the layers that hold it
  (`attention_input` on layers 1.., `mlp_input` on all);
* `final`: the backbone's depth module before the final norm, or None;
* `boundary`: the config field whose multiples start a block, with the layer's flag
  attribute; `site`: the first depth module's class.

No rule realises it yet: `block.attention_residuals` is named unsupported, in place of
layer_extras' generic line for these modules.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.roles import DEPTH
from codegen.analyze.walk import findall


def detect(ctx: Ctx) -> dict | None:
    """The block attention residual fact (see the module docstring), else None."""
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    held: dict[str, dict] = {}
    for index, layer in enumerate(layers):
        for name, child in layer.children():
            if isinstance(child, ModuleRec) and ctx.roles.role(child) == DEPTH:
                entry = held.setdefault(name, {"queries": [], "layers": []})
                entry["layers"].append(index)
                if _queries(child) not in entry["queries"]:
                    entry["queries"].append(_queries(child))
                entry.setdefault("site", ctx.class_site(child))
    if not held:
        return None
    owner = ctx.model.stack_owner
    final = None
    if isinstance(owner, ModuleRec):
        final = next(
            (
                n
                for n, c in owner.children()
                if isinstance(c, ModuleRec) and ctx.roles.role(c) == DEPTH
            ),
            None,
        )
    boundary = _boundary(ctx, layers[0])
    site = next(iter(held.values()))["site"]
    for entry in held.values():
        entry.pop("site")
    fact = {"layer": held, "final": final, "boundary": boundary}
    ctx.cite("block.attention_residuals", site)
    names = ", ".join(f"{n} ({_counted(e['queries'])})" for n, e in held.items())
    ctx.unsupported(
        "block.attention_residuals",
        f"block attention residuals: each sublayer's input is an attention of learned queries"
        f" over the block states ({names}"
        + (f"; {final} before the final norm" if final else "")
        + (f"; a block starts every config.{boundary['field']} layers" if boundary else "")
        + "): no rule yet",
        site,
    )
    return fact


def _counted(counts: list) -> str:
    return f"{' or '.join(map(str, counts))} {'query' if counts == [1] else 'queries'}"


def _queries(rec: ModuleRec) -> int | str:
    params = [p for _, p in rec.children() if isinstance(p, ParamRec)]
    shape = params[0].shape if params else ()
    return 1 if len(shape) == 1 else shape[0]


_FLAG = m.Assign(
    targets=[m.AssignTarget(target=m.Attribute(value=m.Name("self")))],
    value=m.Comparison(
        left=m.BinaryOperation(
            operator=m.Modulo(), right=m.Attribute(value=m.Name("config"), attr=m.Name())
        ),
        comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.Integer("0"))],
    ),
)


def _boundary(ctx: Ctx, layer: ModuleRec) -> dict | None:
    """{"field", "flag"} of `self.<flag> = <index> % config.<field> == 0` in the layer's
    `__init__`, else None."""
    if layer.cls is None:
        return None
    found = ctx.model.project.find_method(layer.cls, "__init__")
    if found is None:
        return None
    for node in findall(found[1], _FLAG):
        target = node.targets[0].target
        modulo = node.value.left
        assert isinstance(target, cst.Attribute) and isinstance(modulo, cst.BinaryOperation)
        return {"field": modulo.right.attr.value, "flag": target.attr.value}
    return None
