"""How HF's `_init_weights` starts the weights, where it departs from the plain table
(normal(0, initializer_range) for every matrix): GPT-2's scheme starts the projections onto
the residual stream (attention output, MLP output) at std / sqrt(2 * n_layers)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.model import walk_tree
from codegen.analyze.roles import attention_calls
from codegen.analyze.walk import findall

# `math.sqrt(2 * <layers>)` (or `2.0 * <layers>`, ModernBERT)
_SQRT_TWO_LAYERS = m.Call(
    func=m.Attribute(attr=m.Name("sqrt")) | m.Name("sqrt"),
    args=[m.Arg(m.BinaryOperation(left=m.Integer("2") | m.Float("2.0"), operator=m.Multiply()))],
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
    """Which projections the scaled init reaches. A `sqrt(2 * layers)` (or a local or a
    dict entry holding it: ModernBERT's `stds["out"]`) used under `if isinstance(module, A)`
    or `(A, B)` reaches, by A: the attention output for an attention class (its forward
    calls an attention kernel), the vocabulary projection for the causal-LM class itself
    (`head`), the prediction head's dense layer for a class built outside the backbone
    (`head_transform`), and the MLP output for any other; one used outside such a branch
    (GPT-2's by-name loop) reaches the attention and MLP outputs."""
    sf = ctx.model.modeling
    attention = set(_attention_classes(ctx))
    kinds: set[str] = set()
    for cls in sf.classes.values():
        method = cls.methods.get("_init_weights")
        if not isinstance(method, cst.FunctionDef):
            continue
        scaled = _ScaledUses(method)
        guarded = []
        for branch in findall(method, m.If()):
            inside = scaled.uses(branch.body)
            owners = _isinstance_owners(branch.test)
            if inside and owners:
                guarded.extend(inside)
                kinds |= {_role(ctx, owner, attention) for owner in owners}
        if any(not any(s is g for g in guarded) for s in scaled.uses(method.body)):
            kinds |= {"attention", "ffn"}
    roles = ("attention", "ffn", "head_transform", "head")
    return tuple(k for k in roles if k in kinds) or ("attention", "ffn")


class _ScaledUses:
    """Where a method uses the scaled std: the `sqrt(2 * layers)` itself, a local assigned
    an expression holding it (`residual_std = ...`), or a literal dict's entry holding it
    (`stds = {"out": ...}` read as `stds["out"]`); the definitions are not uses."""

    def __init__(self, method: cst.FunctionDef) -> None:
        self.names: set[str] = set()
        self.entries: set[tuple[str, str]] = set()
        defined = []
        for assign in findall(method, m.Assign(targets=[m.AssignTarget(m.Name())])):
            name = assign.targets[0].target.value
            if isinstance(assign.value, cst.Dict):
                for element in assign.value.elements:
                    key = getattr(element, "key", None)
                    inside = findall(element.value, _SQRT_TWO_LAYERS)
                    if isinstance(key, cst.SimpleString) and inside:
                        self.entries.add((name, key.evaluated_value))
                        defined += inside
            elif inside := findall(assign.value, _SQRT_TWO_LAYERS):
                self.names.add(name)
                defined += [*inside, assign.targets[0].target]
        self.defined = {id(node) for node in defined}

    def uses(self, node) -> list[cst.CSTNode]:
        """The uses inside `node` (a node or a sequence of statements)."""
        found = []
        for part in node if isinstance(node, list | tuple) else [node]:
            found += [s for s in findall(part, _SQRT_TWO_LAYERS) if id(s) not in self.defined]
            found += [
                n
                for n in findall(part, m.Name())
                if n.value in self.names and id(n) not in self.defined
            ]
            found += [
                sub
                for sub in findall(part, m.Subscript(value=m.Name()))
                if (sub.value.value, _string_index(sub)) in self.entries
            ]
        return found


def _string_index(sub: cst.Subscript) -> str | None:
    """`"out"` of `stds["out"]`, None for any other index."""
    if len(sub.slice) != 1 or not isinstance(sub.slice[0].slice, cst.Index):
        return None
    value = sub.slice[0].slice.value
    return value.evaluated_value if isinstance(value, cst.SimpleString) else None


def _role(ctx: Ctx, owner: str, attention: set[str]) -> str:
    """What the projections of class `owner` scaled in `_init_weights` are (see above)."""
    if owner in attention:
        return "attention"
    if owner == ctx.model.entry_cls.name:
        return "head"
    root = ctx.model.stack_owner_path.split(".")[0] if ctx.model.stack_owner_path else None
    paths = [p for p, rec in walk_tree(ctx.model.entry) if _is_instance(rec, owner)]
    if root and paths and not any(p == root or p.startswith(root + ".") for p in paths):
        return "head_transform"
    return "ffn"


def _is_instance(rec, owner: str) -> bool:
    return isinstance(rec, ModuleRec) and rec.cls is not None and rec.cls.name == owner


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
    for branch in _branches_of(ctx, owner):
        for call in findall(branch, zeros):
            if call.args and _attribute_path(call.args[0].value) == path:
                return sf.cite(call)
    return None


def _branches_of(ctx: Ctx, owner: str):
    """The bodies of the `if isinstance(module, Owner):` branches of the modeling file's
    `_init_weights` methods."""
    for cls in ctx.model.modeling.classes.values():
        method = cls.methods.get("_init_weights")
        if not isinstance(method, cst.FunctionDef):
            continue
        for branch in findall(method, m.If()):
            if _isinstance_of(branch.test, owner):
                yield branch.body


def last_entry_written(ctx: Ctx, owner: str, path: str) -> tuple[float, str] | None:
    """(the number, where) `_init_weights` writes into the last entry of `<module>.<path>`
    for modules of class `owner` by item assignment (`if isinstance(module, Owner):
    module.balancing_biases[-1] = -1.0`), else None. Unlike the `init.*` calls, which
    transformers skips for tensors a checkpoint loaded, such a write also runs after loading."""
    sf = ctx.model.modeling
    last = m.Subscript(
        slice=[m.SubscriptElement(m.Index(m.UnaryOperation(m.Minus(), m.Integer("1"))))]
    )
    for branch in _branches_of(ctx, owner):
        for node in findall(branch, m.Assign(targets=[m.AssignTarget(last)])):
            target = node.targets[0].target.value
            if _attribute_path(target) != path:
                continue
            value = node.value
            sign = -1.0 if isinstance(value, cst.UnaryOperation) else 1.0
            number = value.expression if isinstance(value, cst.UnaryOperation) else value
            if isinstance(number, cst.Integer | cst.Float):
                return sign * float(number.evaluated_value), sf.cite(node)
    return None
