"""Compute the MoE router's logits in fp32, as HF routers that upcast before the projection do.

A half-precision router projection rounds the logits before the scores are taken; where HF
casts the router input and weight to float32 first, a bf16 package that does not picks other
experts for near-tied tokens (a routing flip, not a rounding difference).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, dotted, expression, run

GATE = "self.gate"
_F = m.SimpleStatementLine(
    body=[
        m.Import(
            names=[m.ImportAlias(name=dotted("torch.nn.functional"), asname=m.AsName(m.Name("F")))]
        )
    ]
)


class SetRouterFp32(Transform):
    """In `MoE`, every call of the router Linear `self.gate(h)` becomes
    `F.linear(h.float(), self.gate.weight.float()[, bias])`: the projection runs in fp32
    whatever the model's dtype, the weight stays stored (and sharded) as before. The bias
    is passed when the router is built with one (`bias=True`, or nn.Linear's default), and
    passed when present where a ModelArgs field decides it. Scores and weights downstream
    are then fp32 (the experts sum in the weights' dtype and cast back).
    Running it twice gives the same code."""

    name = "set_router_fp32"

    def apply(self, package, features=None) -> None:
        tree = package.module("model.py")
        gates = m.findall(
            tree,
            m.Assign(targets=[m.AssignTarget(target=dotted(GATE))], value=m.Call()),
        )
        if not gates:
            raise EditError("model.py: MoE builds no router `self.gate = nn.Linear(...)`")
        bias = _bias(gates[0].value)
        linear = (
            "F.linear"
            if any(m.matches(s, _F) for s in tree.body)
            else ("torch.nn.functional.linear")
        )
        edit = _Upcast(linear, bias)
        hits = run(package, "model.py", edit, required=False)
        if not hits and not _done(package.module("model.py")):
            raise EditError("model.py: MoE never calls its router `self.gate(...)`")


def _bias(call: cst.Call) -> str | None:
    """The bias argument of the fp32 projection for the router built by `call`."""
    given = [a.value for a in call.args if a.keyword is not None and a.keyword.value == "bias"]
    if not given:
        return f"{GATE}.bias.float()"  # nn.Linear's default: bias=True
    if m.matches(given[0], m.Name("False")):
        return None
    if m.matches(given[0], m.Name("True")):
        return f"{GATE}.bias.float()"
    return f"None if {GATE}.bias is None else {GATE}.bias.float()"


def _done(tree: cst.Module) -> bool:
    """Already in fp32: some call reads `self.gate.weight.float()`."""
    weight = m.Call(func=m.Attribute(value=dotted(f"{GATE}.weight"), attr=m.Name("float")))
    return bool(m.findall(tree, weight))


class _Upcast(ScopedTransformer):
    def __init__(self, linear: str, bias: str | None):
        super().__init__("MoE", None)
        self.linear, self.bias = linear, bias

    def leave_Call(self, original, updated):
        if not self.in_scope() or not m.matches(updated.func, dotted(GATE)):
            return updated
        if len(updated.args) != 1 or updated.args[0].keyword is not None:
            return updated
        self.hits += 1
        value = updated.args[0].value
        hidden = cst.Module([]).code_for_node(value)
        if not isinstance(value, cst.Name | cst.Attribute | cst.Call | cst.Subscript):
            hidden = f"({hidden})"
        args = [f"{hidden}.float()", f"{GATE}.weight.float()"]
        if self.bias:
            args.append(self.bias)
        return expression(f"{self.linear}({', '.join(args)})")
