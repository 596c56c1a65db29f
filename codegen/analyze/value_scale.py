"""The attention's values times a factor of the config's (MiMo-V2-Flash's
`attention_value_scale`): no reference scales v, so a package built from one would pass v on
as projected, a silently different model.

Read by structure in the representative attention's forward: a product of the value
projection's output (a call of the module the analysis found as v's projection, directly or
through the local it was assigned to) and an attribute of the attention, whose value
`__init__` computed from the config; that attribute is restated over `hf_config`
(`attention.v_scale`, e.g. `(hf_config.attention_value_scale if
hf_config.attention_value_scale is not None else 1.0)`) and must give every analysed layer
the same factor. A factor that cannot be restated is "other", which no rule realises.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.layer_rule import restate_init


def detect(ctx: Ctx, shared: dict) -> str | None:
    """The factor the values are multiplied by, restated over the config ("other" where it
    cannot be), or None."""
    layers = [
        p
        for p in shared.get("per_layer", ())
        if p["type"] in ("full", "sliding") and p["info"].kernel is not None and not p["info"].mla
    ]
    if not layers:
        return None
    info = layers[0]["info"]
    rec = info.rec
    if rec.cls is None or not info.v_lins or len(info.v_lins) != 1:
        return None
    name = next((n for n, child in rec.attrs.items() if child is info.v_lins[0].module), None)
    forward = ctx.model.project.find_method(rec.cls, "forward")
    if name is None or forward is None:
        return None
    factor = _factor(forward[1], name)
    if factor is None:
        return None
    where = ctx.class_site(rec)
    found = restate_init(ctx, rec, factor, [(p["index"], p["info"].rec) for p in layers])
    if found is None or len({repr(v) for v in found[1]}) != 1:
        ctx.cite(
            "attention.v_scale",
            f"{where} (v times {cst.Module([]).code_for_node(factor)}: not restated over the"
            " config, or not one factor on every layer)",
        )
        return "other"
    ctx.cite("attention.v_scale", f"{where} (v times {found[0]})")
    return found[0]


def _factor(forward: cst.FunctionDef, projection: str) -> cst.BaseExpression | None:
    """`self.<attr>` multiplying the output of `self.<projection>(...)` in the forward."""
    call = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name(projection)))
    holders = {"__call__"}  # locals assigned from the projection's output
    for assign in m.findall(forward, m.Assign(targets=[m.AssignTarget(m.Name())])):
        if m.findall(assign.value, call):
            holders.add(assign.targets[0].target.value)
    reads = call | m.Name(m.MatchIfTrue(lambda n: n in holders))
    for product in m.findall(forward, m.BinaryOperation(operator=m.Multiply())):
        for side, other in ((product.left, product.right), (product.right, product.left)):
            if m.findall(side, reads) and m.matches(other, m.Attribute(value=m.Name("self"))):
                return other
    return None
