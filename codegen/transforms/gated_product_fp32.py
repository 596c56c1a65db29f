"""Take a gated feed-forward's product in fp32 and cast it back once, as beam's MLP does."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, run

# `F.<activation>(<gate>, ...)`: the gate's activation (F.silu, F.gelu...)
ACTIVATIONS = ("silu", "gelu", "relu", "sigmoid", "tanh", "mish", "elu", "selu", "leaky_relu")
_ACTIVATION = m.Call(
    func=m.Attribute(value=m.Name("F"), attr=m.OneOf(*(m.Name(a) for a in ACTIVATIONS))),
    args=[m.Arg(), m.ZeroOrMore()],
)
# `(<product>).to(x.dtype)`: one rounding back to the input's dtype
_CAST_BACK = "x"


def _float(node: cst.BaseExpression) -> cst.Call:
    return cst.Call(func=cst.Attribute(value=node, attr=cst.Name("float")))


def _cast_back(product: cst.BinaryOperation) -> cst.Call:
    """`(<product>).to(x.dtype)`"""
    dtype = cst.Attribute(value=cst.Name(_CAST_BACK), attr=cst.Name("dtype"))
    wrapped = product.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return cst.Call(func=cst.Attribute(value=wrapped, attr=cst.Name("to")), args=[cst.Arg(dtype)])


def _upcast_gate(call: cst.Call) -> cst.Call:
    first, *rest = call.args
    return call.with_changes(args=[first.with_changes(value=_float(first.value)), *rest])


class _Fp32Product(ScopedTransformer):
    """In `class_name.forward`: `F.act(g) * u` -> `(F.act(g.float()) * u.float()).to(x.dtype)`;
    the same product split over a name (`h = F.act(g)` ... `h = h * u`, or the shared
    experts' in-place `h = F.act(g, inplace=True)` ... `h *= u`):
    `h = F.act(g.float(), ...)` ... `h = (h * u.float()).to(x.dtype)`."""

    def __init__(self, class_name: str):
        super().__init__(class_name, "forward")
        self.activated: set[str] = set()  # names assigned an activation of the gate

    def leave_Assign(self, original, updated):
        if not self.inside or len(updated.targets) != 1:
            return updated
        target = updated.targets[0].target
        if isinstance(target, cst.Name) and m.matches(updated.value, _ACTIVATION):
            self.activated.add(target.value)
            return updated.with_changes(value=_upcast_gate(updated.value))
        return updated

    def leave_AugAssign(self, original, updated):
        """`h *= u` after `h = F.act(g, inplace=True)` -> `h = (h * u.float()).to(x.dtype)`."""
        target = updated.target
        if not (
            self.inside
            and isinstance(updated.operator, cst.MultiplyAssign)
            and isinstance(target, cst.Name)
            and target.value in self.activated
        ):
            return updated
        self.hits += 1
        product = cst.BinaryOperation(target, cst.Multiply(), _float(updated.value))
        return cst.Assign(targets=[cst.AssignTarget(target)], value=_cast_back(product))

    def leave_BinaryOperation(self, original, updated):
        if not self.inside or not isinstance(updated.operator, cst.Multiply):
            return updated
        left = updated.left
        if m.matches(left, _ACTIVATION):
            left = _upcast_gate(left)
        elif not (isinstance(left, cst.Name) and left.value in self.activated):
            return updated
        self.hits += 1
        return _cast_back(updated.with_changes(left=left, right=_float(updated.right)))


class GatedProductFp32(Transform):
    """The gated product of `module`'s forward (FeedForward, or the routed Experts) is taken
    in fp32 and rounded to the input's dtype once: `(F.silu(g.float()) * u.float()).to(x.dtype)`
    where the reference rounds the activation and then the product (beam's MLP and experts:
    `(act_fn(gate.float()) * up.float()).to(gate.dtype)`). Same values in fp32; in bf16 HF's
    roundings. The experts are made the package's own first (`own_experts`)."""

    name = "gated_product_fp32"

    def apply(self, package, features=None, module: str = "FeedForward") -> None:
        if module == "Experts":
            moe_edits.own_experts(package)
        transformer = _Fp32Product(module)
        run(package, "model.py", transformer)
        if transformer.hits != 1:
            raise EditError(f"model.py: {module}.forward has {transformer.hits} gated products")
