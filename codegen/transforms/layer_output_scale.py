"""Multiply each layer's output by a stored scale of its own (gemma4's `layer_scalar`)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, expression, run

BUFFER = """
# the layer's output scale: a checkpoint tensor, not trained
self.register_buffer("output_scale", torch.ones(1))
"""

PARAMETER = """
self.output_scale = nn.Parameter(torch.ones(1))  # the layer's output scale
"""

INIT = '''
def init_parameters(self, std: float) -> None:
    """The output scale starts at one, as HF's init sets it."""
    nn.init.ones_(self.output_scale)
'''


class LayerOutputScale(Transform):
    """`TransformerBlock` returns its residual sums times `self.output_scale`, a one-element
    tensor the checkpoint holds per layer (`attribute`: HF's name for it): a persistent
    buffer (`trained=False`, gemma4) or a parameter. It starts at one (`init_parameters`),
    and the adapter maps it to the HF layer key."""

    name = "layer_output_scale"

    def apply(self, package, features=None, *, attribute: str, trained: bool = False) -> None:
        edits.append_to_method(
            package, "model.py", "TransformerBlock", "__init__", PARAMETER if trained else BUFFER
        )
        _insert_method(package, INIT)
        run(package, "model.py", _ScaledReturn())
        rows = [(f"model.layers.{{}}.{attribute}", "layers.{}.output_scale")]
        edits.insert_after_layer_rows(package, rows)


class _ScaledReturn(edits.InMethod):
    """`return <sum>` -> `return (<sum>) * self.output_scale` in TransformerBlock.forward."""

    def __init__(self):
        super().__init__("TransformerBlock", "forward")

    def leave_Return(self, original, updated):
        if not self.inside or updated.value is None:
            return updated
        self.hits += 1
        value = (
            updated.value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            if isinstance(updated.value, cst.BinaryOperation)
            else updated.value
        )
        scaled = cst.BinaryOperation(value, cst.Multiply(), expression("self.output_scale"))
        return updated.with_changes(value=scaled)


def _insert_method(package, code: str) -> None:
    """Add `init_parameters` to TransformerBlock (after `__init__`)."""
    module = package.module("model.py")
    block = m.findall(module, m.ClassDef(name=m.Name("TransformerBlock")))
    if not block:
        raise EditError("model.py has no TransformerBlock")
    if m.findall(block[0], m.FunctionDef(name=m.Name("init_parameters"))):
        raise EditError("TransformerBlock already starts its own parameters")

    class _Add(cst.CSTTransformer):
        hits = 0

        def leave_ClassDef(self, original, updated):
            if original.name.value != "TransformerBlock":
                return updated
            body = list(updated.body.body)
            at = next(
                i + 1
                for i, s in enumerate(body)
                if isinstance(s, cst.FunctionDef) and s.name.value == "__init__"
            )
            self.hits += 1
            new = cst.parse_module(code).body
            return updated.with_changes(
                body=updated.body.with_changes(body=body[:at] + list(new) + body[at:])
            )

    run(package, "model.py", _Add())
