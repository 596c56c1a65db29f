"""Residual adds that are learned affine maps of both operands (ZAYA's residual scaling)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits, _moe_edits
from codegen.transforms._rope_edits import rewrite_expressions
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, calls_super_init, run

RESIDUAL_AFFINE = '''
class ResidualAffine(nn.Module):
    """A residual add with a learned per-channel shift and scale on each operand."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_scale = nn.Parameter(torch.ones(dim))
        self.out_bias = nn.Parameter(torch.zeros(dim))
        self.stream_scale = nn.Parameter(torch.ones(dim))
        self.stream_bias = nn.Parameter(torch.zeros(dim))

    def init_parameters(self, std: float) -> None:
        # HF's _init_weights: the plain sum
        nn.init.ones_(self.out_scale)
        nn.init.zeros_(self.out_bias)
        nn.init.ones_(self.stream_scale)
        nn.init.zeros_(self.stream_bias)

    def forward(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (out + self.out_bias) * self.out_scale + (x + self.stream_bias) * self.stream_scale
'''

MODULES = """
self.attention_residual = ResidualAffine(args.dim)  # the attention's residual add
self.ffn_residual = ResidualAffine(args.dim)  # the FFN's residual add
"""

# house parameter <- the analysed role of the HF parameter
PARTS = ("out_bias", "out_scale", "stream_bias", "stream_scale")

# `x + <sublayer>(...)`: a block's residual add
_RESIDUAL_ADD = m.BinaryOperation(left=m.Name(), operator=m.Add(), right=m.Call())
_ATTENTION_CALL = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("attention")))


class ResidualAffine(Transform):
    """Each residual add `x + sublayer(...)` in `TransformerBlock.forward` becomes
    `self.<s>_residual(sublayer(...), x)`, s the attention or the FFN: a `ResidualAffine`
    computing `(out + out_bias) * out_scale + (x + stream_bias) * stream_scale` with
    per-channel parameters (ones and zeros at init).

    `modules` is the analysed `block.residual_affine`: per sublayer ("attention", "mlp") the
    HF layer attribute of its module and its parameters' attributes by role, which the
    adapter maps.
    """

    name = "residual_affine"

    def apply(self, package, features=None, *, modules: dict | None = None) -> None:
        if not modules or set(modules) != {"attention", "mlp"}:
            raise EditError("residual_affine: the attention's and the FFN's residual modules")
        _moe_edits.insert_before_class(package, "model.py", "TransformerBlock", RESIDUAL_AFFINE)
        run(
            package,
            "model.py",
            InsertStatements("TransformerBlock", "__init__", calls_super_init, MODULES),
        )

        def rewrite(node):
            if not m.matches(node, _RESIDUAL_ADD):
                return None
            sublayer = "attention" if m.findall(node.right, _ATTENTION_CALL) else "ffn"
            return cst.Call(
                func=cst.Attribute(cst.Name("self"), cst.Name(f"{sublayer}_residual")),
                args=[cst.Arg(node.right), cst.Arg(node.left)],
            )

        if rewrite_expressions(package, "model.py", "TransformerBlock", "forward", rewrite) != 2:
            raise EditError("TransformerBlock.forward: not one residual add per sublayer")
        rows = [
            (f"model.layers.{{}}.{found['module']}.{found[part]}", f"layers.{{}}.{house}.{part}")
            for label, house in (("attention", "attention_residual"), ("mlp", "ffn_residual"))
            for found in [modules[label]]
            for part in PARTS
        ]
        _attention_edits.insert_rows_after(package, "layers.{}.attention_norm.weight", rows)
