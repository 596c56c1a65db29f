"""How HF's `_init_weights` starts the weights, where it departs from the plain table
(normal(0, initializer_range) for every matrix): GPT-2's scheme starts the projections onto
the residual stream (attention output, MLP output) at std / sqrt(2 * n_layers)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.roles import attention_calls
from codegen.analyze.walk import findall

# `math.sqrt(2 * <layers>)`
_SQRT_TWO_LAYERS = m.Call(
    func=m.Attribute(attr=m.Name("sqrt")) | m.Name("sqrt"),
    args=[m.Arg(m.BinaryOperation(left=m.Integer("2"), operator=m.Multiply()))],
)


def scaled_residual_init(ctx: Ctx) -> bool:
    """Some `_init_weights` of the modeling file divides the std by sqrt(2 * layers)."""
    sf = ctx.model.modeling
    for cls in sf.classes.values():
        method = cls.methods.get("_init_weights")
        if isinstance(method, cst.FunctionDef) and findall(method, _SQRT_TWO_LAYERS):
            ctx.cite("block.scaled_residual_init", f"{sf.cite(method)} (std / sqrt(2 * layers))")
            return True
    ctx.cite("block.scaled_residual_init", "no scaled init of the residual projections")
    return False


def scaled_residual_projections(ctx: Ctx) -> tuple[str, ...]:
    """Which residual projections the scaled init reaches. A `sqrt(2 * layers)` under
    `if isinstance(module, A)` or `(A, B)` reaches the attention output for an attention
    class (its forward calls an attention kernel) and the MLP output for any other; one
    outside such a branch (GPT-2's by-name loop) reaches both."""
    sf = ctx.model.modeling
    attention = set(_attention_classes(ctx))
    kinds: set[str] = set()
    for cls in sf.classes.values():
        method = cls.methods.get("_init_weights")
        if not isinstance(method, cst.FunctionDef):
            continue
        guarded = []
        for branch in findall(method, m.If()):
            inside = findall(branch.body, _SQRT_TWO_LAYERS)
            owners = _isinstance_owners(branch.test)
            if inside and owners:
                guarded.extend(inside)
                kinds |= {"attention" if o in attention else "ffn" for o in owners}
        if any(not any(s is g for g in guarded) for s in findall(method, _SQRT_TWO_LAYERS)):
            kinds |= {"attention", "ffn"}
    return tuple(k for k in ("attention", "ffn") if k in kinds) or ("attention", "ffn")


def _attention_classes(ctx: Ctx) -> list[str]:
    """Classes of the modeling file whose forward calls a softmax-attention kernel."""
    sf = ctx.model.modeling
    return [
        name
        for name, cls in sf.classes.items()
        if "forward" in cls.methods and attention_calls(ctx.roles.method_signals(cls).ops)
    ]


def _isinstance_of(test: cst.BaseExpression, owner: str) -> bool:
    """`isinstance(module, Owner)` or `isinstance(module, (A, Owner))`."""
    return owner in _isinstance_owners(test)


def _isinstance_owners(test: cst.BaseExpression) -> list[str]:
    """The class names `isinstance(module, A)` / `isinstance(module, (A, b.B))` tests."""
    if not m.matches(test, m.Call(func=m.Name("isinstance"))) or len(test.args) != 2:
        return []
    kinds = test.args[1].value
    names = [e.value for e in kinds.elements] if isinstance(kinds, cst.Tuple) else [kinds]
    found = []
    for n in names:
        if isinstance(n, cst.Attribute):
            n = n.attr
        if isinstance(n, cst.Name):
            found.append(n.value)
    return found


def _attribute_path(node: cst.BaseExpression) -> str | None:
    """`module.gate.weight` -> "gate.weight" (the chain below the `_init_weights` argument)."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    return ".".join(reversed(parts)) if isinstance(node, cst.Name) and parts else None


def zeroed_by_init(ctx: Ctx, owner: str, path: str) -> str | None:
    """Where `_init_weights` zeroes `<module>.<path>` for modules of class `owner`
    (`if isinstance(module, Owner): init.zeros_(module.gate.weight)`), else None."""
    sf = ctx.model.modeling
    zeros = m.Call(func=m.Attribute(attr=m.Name("zeros_")) | m.Name("zeros_"))
    for cls in sf.classes.values():
        method = cls.methods.get("_init_weights")
        if not isinstance(method, cst.FunctionDef):
            continue
        for branch in findall(method, m.If()):
            if not _isinstance_of(branch.test, owner):
                continue
            for call in findall(branch.body, zeros):
                if call.args and _attribute_path(call.args[0].value) == path:
                    return sf.cite(call)
    return None
