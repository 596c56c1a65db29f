"""Load projections a checkpoint stores [in, out] (transformers' Conv1D: GPT-2, GPT-1)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms._attention_edits import statements
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run

NOTE = "# stored [in, out] (Conv1D) in the checkpoint: transposed on load and on save\n"


class TransposedLinears(Transform):
    """The adapter's `transposed` set names the checkpoint keys (`prefix.{}.key` for each
    layer-relative `keys` entry) whose tensor is the transpose of the house `nn.Linear`
    weight; `from_hf` and `to_hf` transpose exactly those. The model keeps `nn.Linear`, so
    its shard plan and kernels are the reference's."""

    name = "transposed_linears"

    def apply(self, package, features=None, *, keys, prefix: str) -> None:
        if not keys:
            raise EditError("no transposed checkpoint keys given")
        layer = f"{prefix}.{{}}." if prefix else ""
        names = ", ".join(f'"{layer}{key}"' for key in keys)
        run(
            package,
            "state_dict_adapter.py",
            AfterFromHfMap(f"{NOTE}transposed = frozenset({{{names}}})"),
        )


class AfterFromHfMap(cst.CSTTransformer):
    """Put the statement after `from_hf_map` in the adapter class."""

    def __init__(self, code: str):
        super().__init__()
        self.new, self.hits = statements(code), 0

    def leave_ClassDef(self, original, updated):
        body = list(updated.body.body)
        at = next((i for i, s in enumerate(body) if _assigns_map(s)), None)
        if at is None:
            return updated
        self.hits += 1
        body[at + 1 : at + 1] = self.new
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _assigns_map(statement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and isinstance(statement.body[0], cst.Assign | cst.AnnAssign)
        and isinstance(
            target := (
                statement.body[0].targets[0].target
                if isinstance(statement.body[0], cst.Assign)
                else statement.body[0].target
            ),
            cst.Name,
        )
        and target.value == "from_hf_map"
    )
