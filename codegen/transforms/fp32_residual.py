"""The residual stream kept in fp32 whatever the model's dtype (zaya's residual_in_fp32)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._rope_edits import rewrite_expressions
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, expression, findall, run

_NORM = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()), args=[m.Arg()])


class Fp32Residual(Transform):
    """`Model.forward` casts the stream to fp32 before the layers and back to the final
    norm's dtype after them; every norm of `TransformerBlock` reads it cast to its weight's
    dtype (`norm(x.to(norm.weight.dtype))`), so sublayers compute in the model's dtype while
    their outputs are added to the fp32 stream (type promotion keeps the sums fp32)."""

    name = "fp32_residual"

    def apply(self, package, features=None) -> None:
        loop = _layer_loop(package)
        stream = _stream(loop)
        cast = f"{stream} = {stream}.float()  # the residual stream is kept in fp32"
        run(
            package,
            "model.py",
            InsertStatements("Model", "forward", lambda s: s.deep_equals(loop), cast, before=True),
        )
        if "norm" not in _norms(package, "Model"):
            raise EditError("Model: no final norm to hand the stream back in the model's dtype")
        back = f"{stream} = {stream}.to(self.norm.weight.dtype)  # the final norm's dtype"
        run(
            package,
            "model.py",
            InsertStatements("Model", "forward", lambda s: s.deep_equals(loop), back),
        )
        norms = _norms(package, "TransformerBlock")

        def rewrite(node):
            if not m.matches(node, _NORM) or node.func.attr.value not in norms:
                return None
            name = node.func.attr.value
            read = node.args[0].value
            if not isinstance(read, cst.Name | cst.Attribute | cst.Call):
                read = read.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            cast = cst.Call(
                func=cst.Attribute(read, cst.Name("to")),
                args=[cst.Arg(expression(f"self.{name}.weight.dtype"))],
            )
            return node.with_changes(args=[node.args[0].with_changes(value=cast)])

        if not rewrite_expressions(package, "model.py", "TransformerBlock", "forward", rewrite):
            raise EditError("TransformerBlock.forward: no norm call reads the stream")


def _layer_loop(package) -> cst.For:
    (model,) = findall(package.module("model.py"), m.ClassDef(name=m.Name("Model")))
    loops = findall(model, moe_edits.LAYER_LOOP)
    if len(loops) != 1:
        raise EditError("Model.forward: not one loop over self.layers")
    return loops[0]


def _stream(loop: cst.For) -> str:
    """The name the loop's layer call reads first and assigns back (`h = layer(h, ...)`)."""
    for assign in findall(loop, m.Assign(value=m.Call(args=[m.Arg(m.Name()), m.ZeroOrMore()]))):
        name = assign.value.args[0].value.value
        target = assign.targets[0].target
        names = [e.value for e in target.elements] if isinstance(target, cst.Tuple) else [target]
        if any(m.matches(n, m.Name(name)) for n in names):
            return name
    raise EditError("Model.forward: the layer loop assigns no stream back")


def _norms(package, cls: str) -> set[str]:
    """The attributes `cls.__init__` builds a norm class into (`self.x = RMSNorm(...)`)."""
    (node,) = findall(package.module("model.py"), m.ClassDef(name=m.Name(cls)))
    found = set()
    for assign in findall(node, m.Assign(targets=[m.AssignTarget(m.Attribute(m.Name("self")))])):
        value = assign.value
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Name):
            if value.func.value.endswith("Norm"):
                found.add(assign.targets[0].target.attr.value)
    return found
