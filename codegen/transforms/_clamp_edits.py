"""Edits shared by the rules that clamp a SwiGLU's branches to a config bound before the
product (`clamp_experts` on the routed experts, `clamp_feed_forward` on the dense and shared
MLP): `F.silu(gate) * up` -> `F.silu(gate.clamp(max=self.limit)) * up.clamp(-self.limit,
self.limit)`, the limit a parameter of the class, passed `args.swiglu_limit` where it is
built."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.clamped_swiglu import SiluProduct, _AddParameters, _ExtendCall
from codegen.transforms.edits import ScopedTransformer, assigns, run

FIELD = "swiglu_limit: float = 7.0  # gate clamped to <= it, up to [-it, it] before the product"


def clamp_product(package, class_name: str, after: str, limit: str) -> None:
    """Clamp `class_name.forward`'s `F.silu(gate) * up` (an activation and a product in two
    statements, the shared experts' `h = F.silu(..)` then `h = h * ..`, joined first) to
    `self.limit`, set in `__init__` after `self.<after>`; `limit`: the HF config field."""
    run(package, "model.py", _JoinProduct(class_name), required=False)
    run(package, "model.py", _Clamp(class_name))
    run(package, "model.py", _AddParameters(class_name, ("limit: float",)))
    moe_edits.insert_statements(
        package, class_name, "__init__", assigns(f"self.{after}"), "self.limit = limit"
    )
    run(package, "model.py", _ExtendCall(class_name, ("args.swiglu_limit",)))
    if not _has_field(package, "swiglu_limit"):  # the other clamp rule may have added it
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"swiglu_limit": f"hf_config.{limit}"})


def _has_field(package, name: str) -> bool:
    module = package.module("args.py")
    return bool(m.findall(module, m.AnnAssign(target=m.Name(name))))


class _Clamp(SiluProduct):
    """`F.silu(<gate>) * <up>` -> both branches clamped to the limit."""

    def replace(self, gate: str, up: str) -> str:
        return f"F.silu({gate}.clamp(max=self.limit)) * {up}.clamp(-self.limit, self.limit)"


_SILU = m.Call(func=m.Attribute(value=m.Name("F"), attr=m.Name("silu")))


class _JoinProduct(ScopedTransformer):
    """`h = F.silu(<gate>)` followed by `h = h * <up>` (or the shared experts' in-place
    `h = F.silu(<gate>, inplace=True)` then `h *= <up>`) -> `h = F.silu(<gate>) * <up>`."""

    def __init__(self, class_name: str):
        super().__init__(class_name, "forward")

    def leave_IndentedBlock(self, original, updated):
        if not self.in_scope():
            return updated
        body = list(updated.body)
        for i, (first, second) in enumerate(zip(body, body[1:], strict=False)):
            name = _assigned(first, _SILU)
            up = _multiplied(second, name) if name is not None else None
            if up is None:
                continue
            silu = first.body[0].value
            gate = silu.with_changes(
                args=[silu.args[0].with_changes(comma=cst.MaybeSentinel.DEFAULT)]
            )
            joined = cst.BinaryOperation(gate, cst.Multiply(), up)
            body[i] = first.with_changes(body=[first.body[0].with_changes(value=joined)])
            del body[i + 1]
            self.hits += 1
            return updated.with_changes(body=body)
        return updated


def _assigned(statement, value) -> str | None:
    """The name `statement` (`name = <value>`) assigns, else None."""
    if m.matches(
        statement,
        m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())], value=value)]),
    ):
        return statement.body[0].targets[0].target.value
    return None


def _multiplied(statement, name: str) -> cst.BaseExpression | None:
    """`<up>` of `statement` when it is `name = name * <up>` or `name *= <up>`, else None."""
    product = m.BinaryOperation(left=m.Name(name), operator=m.Multiply())
    if _assigned(statement, product) == name:
        return statement.body[0].value.right
    in_place = m.AugAssign(target=m.Name(name), operator=m.MultiplyAssign())
    if m.matches(statement, m.SimpleStatementLine(body=[in_place])):
        return statement.body[0].value
    return None
