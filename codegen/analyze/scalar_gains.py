"""Learned scalars a feed-forward multiplies in.

A parameter of a single element that an MLP, an MoE block or its router multiplies into
what it computes is a trained gain: it starts at one, so a toy initialised as HF does hides
it, and a package without it would run a checkpoint's trained value as one. The dense MLP's
gain on its output is `ffn.output_gain` (read also from the MLP a layer builds only under
another setting, inkling's `mlp_layer_types`), the router's on its weights `moe.router_gain`
(inkling's `global_scale`, both); any other is named (path in the layer, site of the
product) as `ffn.scalar_gain` on every kind of feed-forward the layers build as configured.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.detect_ffn import ffn_modules
from codegen.analyze.evaluate import ModuleListRec, ModuleRec, ParamRec, Site, Unknown
from codegen.analyze.roles import MLP, MOE, ROUTER


def detect(ctx: Ctx) -> tuple[str | None, str | None]:
    """(`ffn.output_gain`, `moe.router_gain`): the attribute of the dense MLP's output gain
    and of the router's gain on the weights it returns (inkling's `gate.global_scale`),
    else None; other gains are named unsupported."""
    found: dict[str, str] = {}  # path in the layer -> site of the product
    seen: set[int] = set()
    gains = set()
    routers: set[str] = set()
    router_sites: list[str] = []
    for _, (kind, rec, path) in sorted(ffn_modules(ctx).items()):
        if id(rec) in seen or not isinstance(rec, ModuleRec) or rec.cls is None:
            continue
        seen.add(id(rec))
        gain = _output_gain(ctx, rec) if kind == MLP else None
        if gain is not None:
            gains.add(gain[0])
            ctx.cite("ffn.output_gain", gain[1])
        for name, param, owner in _params(rec, path):
            if not _scalar(param) or owner.cls is None:
                continue
            if gain is not None and owner is rec and rec.attrs.get(gain[0]) is param:
                continue
            for t in ctx.trace(owner).terms:
                if t.op == "mul" and any(
                    isinstance(a, Term) and a.op == "param" and a.module is param for a in t.args
                ):
                    site = t.site.cite() if t.site else ctx.class_site(owner)
                    if kind == MOE and ctx.roles.role(owner) == ROUTER and owner is not rec:
                        # the router's own gain on the weights it returns: `moe.router_gain`
                        routers.add(next(n for n, v in owner.attrs.items() if v is param))
                        router_sites.append(site)
                    else:
                        found.setdefault(name, site)
                    break
    router_gain = routers.pop() if len(routers) == 1 else None
    if router_gain is not None:
        ctx.cite("moe.router_gain", router_sites[0])
    elif routers:
        found.update({f"router {r}": router_sites[0] for r in sorted(routers)})
    if not gains:
        for rec in _unbuilt_mlps(ctx):  # the dense MLP a layer builds under other settings
            gain = _output_gain(ctx, rec) if ctx.roles.role(rec) == MLP else None
            if gain is not None:
                gains.add(gain[0])
                ctx.cite("ffn.output_gain", gain[1])
    if found:
        names = ", ".join(found)
        ctx.unsupported(
            "ffn.scalar_gain",
            f"learned one-element gains multiplied into the feed-forward: {names}: no rule yet"
            " (a package would run the trained value as one)",
            next(iter(found.values())),
        )
    return (gains.pop() if len(gains) == 1 else None), router_gain


def _unbuilt_mlps(ctx: Ctx) -> list[ModuleRec]:
    """The other modules the first MoE layer's class assigns to its MoE's attribute in
    another branch of its `__init__` (`else: self.mlp = InklingMLP(config)`), built from
    the model's config: the dense MLPs a setting such as `mlp_layer_types` turns on."""
    layers = ctx.model.layers
    moes = [(i, rec, path) for i, (kind, rec, path) in ffn_modules(ctx).items() if kind == MOE]
    if not moes or not layers:
        return []
    index, moe, path = moes[0]
    layer = layers[index]
    if layer.cls is None or "." in path:
        return []
    init = ctx.model.project.find_method(layer.cls, "__init__")
    if init is None:
        return []
    owner, fn = init
    target = m.Assign(targets=[m.AssignTarget(m.Attribute(m.Name("self"), m.Name(path)))])
    out = []
    for node in m.findall(fn, target):
        call = node.value
        if not isinstance(call, cst.Call) or not isinstance(call.func, cst.Name):
            continue
        cls = ctx.model.project.resolve_class(owner.sf, call.func.value)
        if cls is None or cls is moe.cls or [code(a.value) for a in call.args] != ["config"]:
            continue
        try:
            rec = ctx.model.interp.instantiate(cls, [ctx.model.config], {}, Site(owner.sf, call))
        except Unknown:
            continue
        out.append(rec)
    return out


def _output_gain(ctx: Ctx, rec: ModuleRec) -> tuple[str, str] | None:
    """(attribute, site) of a one-element parameter of `rec` its forward's result is the
    product with: `return down(...) * self.global_scale`."""
    result = ctx.trace(rec).result
    if not isinstance(result, Term) or result.op != "mul" or len(result.args) != 2:
        return None
    for arg in result.args:
        if isinstance(arg, Term) and arg.op == "param" and isinstance(arg.module, ParamRec):
            name = next((n for n, v in rec.attrs.items() if v is arg.module), None)
            if name is not None and _scalar(arg.module):
                return name, result.site.cite() if result.site else ctx.class_site(rec)
    return None


def code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _scalar(p: ParamRec) -> bool:
    """One element: shape (1,) (or (1, 1)...), or () when built from a number (an unread
    shape is () too, and no finding)."""
    if p.kind != "parameter" or not isinstance(p.shape, tuple):
        return False
    if not p.shape:
        return p.value is not None
    return all(isinstance(d, int) and not isinstance(d, bool) and d == 1 for d in p.shape)


def _params(rec: ModuleRec, path: str, depth: int = 0):
    for name, child in rec.children():
        sub = f"{path}.{name}" if path else name
        if isinstance(child, ParamRec):
            yield sub, child, rec
        elif isinstance(child, ModuleRec) and depth < 3:
            yield from _params(child, sub, depth + 1)
        elif isinstance(child, ModuleListRec) and depth < 3:
            for i, item in enumerate(child.items[:1]):
                if isinstance(item, ModuleRec):
                    yield from _params(item, f"{sub}.{i}", depth + 1)
