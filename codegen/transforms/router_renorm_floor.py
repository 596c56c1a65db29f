"""The router clamps the sum of its picked weights to a lower bound before dividing by it.

Ernie-4.5's router divides the k picked weights by `torch.clamp(sum, min=config.moe_norm_min)`
where other routers divide by the bare sum. Both agree while the sum stays above the bound;
a config with a larger bound would load and route otherwise, so the package reads the bound
(`renorm_floor`) from the same config field and clamps alike. A bound the HF code writes as
a number is written as that number.
"""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ScopedTransformer,
    calls_super_init,
    code_of,
    expression,
    run,
)
from codegen.transforms.router_renorm_eps import SITES

_SUM = m.Call(func=m.Attribute(attr=m.Name("sum")))
FIELD = "renorm_floor: float = 1e-12  # lower bound of the sum the k weights are divided by"


class RouterRenormFloor(Transform):
    """Every `<w> / <w>.sum(...)` at the router's sites becomes `<w> / <w>.sum(...).clamp(
    min=<floor>)`: `floor` a config field (ModelArgs gains `renorm_floor`, read from it, and
    the router class keeps it as `self.renorm_floor`) or a number. A package whose router
    divides by no bare sum is refused: HF clamps a sum the package would not have."""

    name = "router_renorm_floor"

    def apply(self, package, features=None, *, floor: str | float) -> None:
        if isinstance(floor, bool) or not isinstance(floor, str | int | float):
            raise EditError(
                f"router_renorm_floor: {floor!r} is neither a config field nor a number"
            )
        bound = "self.renorm_floor" if isinstance(floor, str) else repr(float(floor))
        edited = []
        for cls, method in SITES:
            if not moe_edits.has_class(package, "model.py", cls):
                continue
            clamp = _Clamp(cls, method, bound)
            run(package, "model.py", clamp, required=False)
            if clamp.hits:
                edited.append(cls)
        if not edited:
            raise EditError(
                "router_renorm_floor: HF clamps the sum it renormalises the picked weights by;"
                " the package's router divides by no bare sum"
            )
        if not isinstance(floor, str):
            return
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"renorm_floor": f"hf_config.{floor}"})
        for cls in edited:
            run(
                package,
                "model.py",
                InsertStatements(
                    cls, "__init__", calls_super_init, "self.renorm_floor = args.renorm_floor"
                ),
            )


class _Clamp(ScopedTransformer):
    """`<w> / <w>.sum(...)` in `cls.method` -> `<w> / <w>.sum(...).clamp(min=<bound>)`."""

    def __init__(self, cls: str, method: str, bound: str):
        super().__init__(cls, method)
        self.bound = bound

    def leave_BinaryOperation(self, original, updated):
        if not self.in_scope() or not m.matches(updated.operator, m.Divide()):
            return updated
        total = updated.right
        if not m.matches(total, _SUM) or not total.func.value.deep_equals(updated.left):
            return updated
        self.hits += 1
        return updated.with_changes(right=expression(f"{code_of(total)}.clamp(min={self.bound})"))
