"""Zero-computation (identity) experts: router slots past the routed experts that pass a token
on unchanged, times its routing weight (LongCat-Flash's `zero_expert_num`).

Read by structure: the experts module holds an `nn.Identity` it applies to some slots, and the
router scores more experts than the experts module has weights for (its narrowest stacked
projection: LongCat-Flash's `down_proj`). The count they differ by is restated as the config
expression HF computes it from, found among the expressions of the router's and the experts'
`__init__` whose value it is (`config.zero_expert_num or 0`): a package reads the same field.
"""

from __future__ import annotations

import libcst.matchers as cm

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.features import UNKNOWN
from codegen.analyze.walk import findall


def detect(ctx: Ctx, router, experts, num_experts) -> dict | str | None:
    """{"count": the identity experts' count as a config expression, "rows": the experts'
    stacked weights that hold rows for them too (LongCat-Flash's gate_up_proj: HF builds
    them and never reads them)}; None without identity experts, "unknown" when the count is
    found but not its expression."""
    if not isinstance(experts, ModuleRec) or not isinstance(num_experts, int):
        return None
    if not any(
        isinstance(child, ModuleRec) and child.kind == "Identity" for _, child in experts.children()
    ):
        return None
    stacked = {
        name: p.shape[0]
        for name, p in experts.children()
        if isinstance(p, ParamRec) and len(p.shape) == 3 and isinstance(p.shape[0], int)
    }
    counts = list(stacked.values())
    if not counts or min(counts) >= num_experts:
        return None
    zero = num_experts - min(counts)
    found = _expression(ctx, [router, experts], zero, min(counts))
    ctx.cite(
        "moe.zero_experts",
        f"{ctx.class_site(experts)} ({zero} identity experts: the router scores {num_experts},"
        f" the experts hold {min(counts)})",
    )
    if found is None:
        return UNKNOWN
    rows = tuple(name for name, count in stacked.items() if count == num_experts)
    return {"count": found, "rows": rows}


def _expression(ctx: Ctx, recs: list, zero: int, routed: int) -> str | None:
    """`config.X` (or `config.X or 0`, HF's reading of an unset field) of value `zero`, from
    the `__init__` of the router or the experts; where several fields have that value, the
    one added to the routed experts' count."""
    plain: dict[str, bool] = {}  # field -> read as `config.X or 0`
    added: set[str] = set()
    for rec in recs:
        found = (
            isinstance(rec, ModuleRec)
            and rec.cls
            and ctx.model.project.find_method(rec.cls, "__init__")
        )
        if not found:
            continue
        params = [p.name.value for p in found[1].params.params][1:]
        if not params:
            continue
        config = params[0]
        for node in findall(found[1].body, cm.Attribute(value=cm.Name(config))):
            if _value(ctx, node.attr.value) == zero:
                plain.setdefault(node.attr.value, False)
        for node in findall(found[1].body, cm.BooleanOperation(operator=cm.Or())):
            left = node.left
            if (
                cm.matches(left, cm.Attribute(value=cm.Name(config)))
                and cm.matches(node.right, cm.Integer(value="0"))
                and left.attr.value in plain
            ):
                plain[left.attr.value] = True
        for node in findall(found[1].body, cm.BinaryOperation(operator=cm.Add())):
            names = [a.attr.value for a in findall(node, cm.Attribute(value=cm.Name(config)))]
            if any(_value(ctx, n) == routed for n in names):
                added.update(n for n in names if n in plain)
    fields = sorted(plain)
    if len(fields) > 1:
        fields = [f for f in fields if f in added]
    if len(fields) != 1:
        return None
    field = fields[0]
    return f"config.{field} or 0" if plain[field] else f"config.{field}"


def _value(ctx: Ctx, name: str):
    config = ctx.model.config
    value = config.attrs.get(config.key(name))
    return value if isinstance(value, int) and not isinstance(value, bool) else None
