"""A router whose top-k is a config field that is an int or a per-layer list.

hunyuan_v1_moe's router takes `self.top_k = config.moe_topk if isinstance(config.moe_topk,
int) else config.moe_topk[layer_idx]` and picks `torch.topk(..., self.top_k)`: a checkpoint
may give each layer its own number of experts per token. A package reading one `top_k` fails
on such a config (or computes another model). Where a class of a layer's modules assigns
`self.<attr>` that way (the int test either way round: `isinstance(config.F, int)` keeps the
field whole, `isinstance(config.F, list | tuple)` indexes it) from an `__init__` parameter
index, and calls a `topk` with `self.<attr>`, the fact `moe.layer_top_k` is `F`. Found by the
code's structure with libcst; nothing is run.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze import int_or_list
from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.source import ClassInfo


def detect(ctx: Ctx) -> str | None:
    """The config field of the router's per-layer top-k, cited, else None."""
    return detect_in_layers(ctx, "moe.layer_top_k", in_class)


def detect_in_layers(ctx: Ctx, fact: str, in_class) -> str | None:
    """The field `in_class` finds in the first class of a layer's modules that has it,
    cited as `fact`, else None."""
    seen: set[int] = set()
    for layer in ctx.model.layers or ():
        if not isinstance(layer, ModuleRec):
            continue
        for rec in _descendants(layer):
            info = rec.cls
            if info is None or id(info) in seen:
                continue
            seen.add(id(info))
            found = in_class(info)
            if found is not None:
                field, node = found
                where = info.sf.cite(node, info.node, info.methods["__init__"])
                ctx.cite(fact, f"{where} (config.{field}[layer])")
                return field
    return None


def _descendants(rec: ModuleRec):
    for _, child in rec.children():
        if isinstance(child, ModuleRec):
            yield child
            yield from _descendants(child)


def in_class(info: ClassInfo) -> tuple[str, cst.CSTNode] | None:
    """(field, the assignment) where `info` takes a per-layer top-k, else None."""
    for field, node, attr in per_layer_attrs(info):
        if any(_picks(method, attr) for method in info.methods.values()):
            return field, node
    return None


def per_layer_attrs(info: ClassInfo):
    """(field, the assignment, attribute) for each `self.<attribute> = cfg.F if
    isinstance(cfg.F, int) else cfg.F[i]` of `info.__init__`, `cfg` and `i` its parameters."""
    init = info.methods.get("__init__")
    if init is None:
        return
    params = [p.name.value for p in init.params.params[1:]]
    for node in m.findall(init, m.Assign(targets=[m.AssignTarget(_self_attr())])):
        field = per_layer_field(node.value, params)
        if field is not None:
            yield field, node, node.targets[0].target.attr.value


def per_layer_field(value: cst.BaseExpression, params: list[str]) -> str | None:
    """`F` where `value` is `cfg.F if isinstance(cfg.F, int) else cfg.F[i]` (or the list test
    with the branches swapped), `cfg` and `i` two of `params`."""
    found = int_or_list.layer_indexed(value)
    if found is None:
        return None
    tested, indexed = found
    if not m.matches(tested, m.Attribute(value=m.Name(), attr=m.Name())):
        return None
    config, index = tested.value.value, indexed.slice[0].slice.value.value
    if config not in params or index not in params or index == config:
        return None
    return tested.attr.value


def _self_attr() -> m.Attribute:
    return m.Attribute(value=m.Name("self"), attr=m.Name())


def _picks(method: cst.FunctionDef, attr: str) -> bool:
    """`method` calls a `topk` (`torch.topk(x, self.<attr>)`, `x.topk(k=self.<attr>)`) with
    `self.<attr>` among its arguments."""
    k = m.Attribute(value=m.Name("self"), attr=m.Name(attr))
    topk = m.Call(
        func=m.Name("topk") | m.Attribute(attr=m.Name("topk")),
        args=[m.ZeroOrMore(), m.Arg(value=k), m.ZeroOrMore()],
    )
    return bool(m.findall(method, topk))
