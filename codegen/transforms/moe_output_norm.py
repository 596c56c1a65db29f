"""Normalise the MoE block's output before the residual add.

axk1's MoE returns `post_mlp_layernorm(routed + shared)`: the norm belongs to the MoE block,
so only MoE layers have it (a dense layer's output is added unnormed). The block gets a norm
built as the TransformerBlock's `ffn_norm` is (same kind, size and eps) and every value
MoE.forward returns goes through it.
"""

from __future__ import annotations

import re

import libcst as cst

from codegen.transforms._ffn_edits import adapter_rows, rewrite_adapter, self_assignment
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, code_of, run

_MOE = "MoE"
_NORM = "norm"


class AddMoeOutputNorm(Transform):
    """MoE.forward's `return out` becomes `return self.norm(out)`; `self.norm` is built like
    the block's `ffn_norm`. `name`: the norm's attribute on HF's MoE module, which its
    checkpoint rows are named after (align_hf_keys moves them to where the checkpoint has
    them)."""

    name = "add_moe_output_norm"

    def apply(self, package, features=None, *, name: str) -> None:
        build = self_assignment(package, "model.py", "TransformerBlock", "__init__", "ffn_norm")
        if build is None:
            raise EditError("TransformerBlock builds no ffn_norm to copy the MoE norm from")
        if not run(package, "model.py", _NormReturns(), required=False):
            raise EditError("MoE.forward returns nothing to normalise")
        run(package, "model.py", _AppendToInit(f"self.{_NORM} = {code_of(build)}"))
        _adapter_rows(package, name)


class _NormReturns(ScopedTransformer):
    def __init__(self) -> None:
        super().__init__(_MOE, "forward")

    def leave_Return(self, original, updated):
        if not self.in_scope() or updated.value is None:
            return updated
        self.hits += 1
        call = cst.Call(
            func=cst.Attribute(cst.Name("self"), cst.Name(_NORM)), args=[cst.Arg(updated.value)]
        )
        return updated.with_changes(value=call)


class _AppendToInit(ScopedTransformer):
    def __init__(self, code: str) -> None:
        super().__init__(_MOE, "__init__")
        self.code = code

    def leave_FunctionDef(self, original, updated):
        inside = self.in_scope()
        updated = super().leave_FunctionDef(original, updated)
        if not inside:
            return updated
        self.hits += 1
        body = [*updated.body.body, cst.parse_statement(self.code)]
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _adapter_rows(package, name: str) -> None:
    """One row per parameter of the block's ffn_norm, under the MoE block's keys, after the
    last MoE row: `<hf moe>.<name>.weight` -> `<house moe>.norm.weight`."""
    rows = adapter_rows(package)
    gate = next(
        (
            (hf, house)
            for hf, house in rows
            if house is not None and re.fullmatch(r".*\.moe\.gate\.weight", house)
        ),
        None,
    )
    if gate is None:
        raise EditError("the adapter has no MoE router row (moe.gate.weight)")
    hf_moe, house_moe = gate[0].rsplit(".", 2)[0], gate[1].rsplit(".", 2)[0]
    parameters = [
        house.rsplit(".", 1)[1]
        for _, house in rows
        if house is not None and re.fullmatch(r".*\.ffn_norm\.\w+", house)
    ]
    if not parameters:
        raise EditError("the adapter has no ffn_norm row")
    new = [(f"{hf_moe}.{name}.{p}", f"{house_moe}.{_NORM}.{p}") for p in parameters]
    last = max(i for i, (_, house) in enumerate(rows) if house and house.startswith(house_moe))
    index = 0

    def rewrite(hf: str, house: str | None):
        nonlocal index
        index += 1
        return [(hf, house), *new] if index - 1 == last else [(hf, house)]

    rewrite_adapter(package, rewrite)
