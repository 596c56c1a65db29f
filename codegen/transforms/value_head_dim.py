"""Value heads of a size of their own beside the query/key heads (MiMo-V2-Flash)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, assigns, run

FIELD = "v_head_dim: int = 128  # value head size (the query/key heads are head_dim wide)"
ASSIGN = "self.v_head_dim = args.v_head_dim"

_HEAD_DIM = m.Attribute(value=m.Name("args") | m.Name("self"), attr=m.Name("head_dim"))


class ValueHeadDim(Transform):
    """The values' heads are `args.v_head_dim` wide, read from the config field that sizes
    them in HF (`hf_config.v_head_dim`), the queries' and keys' `head_dim`: `wv` projects to
    `n_kv_heads * v_head_dim`, `wo` takes `n_heads * v_head_dim`, and `v` is viewed with
    the value head size. The attention kernel takes a value head size of its own."""

    name = "value_head_dim"

    def apply(self, package, features=None, *, field: str | None = None) -> None:
        if not field:
            raise ValueError("value_head_dim needs the config expression of the value head size")
        edits.add_args_field(package, FIELD, f"v_head_dim={field}")
        run(
            package,
            "model.py",
            InsertStatements("Attention", "__init__", assigns("self.head_dim"), ASSIGN),
        )
        for target, method in (("self.wv", "__init__"), ("self.wo", "__init__"), ("v", "forward")):
            run(package, "model.py", _ValueSized(target, method))


class _ValueSized(edits.InMethod):
    """In the statement assigning `target`, the head size read (`args.head_dim`,
    `self.head_dim`) becomes the value head size."""

    def __init__(self, target: str, method: str):
        super().__init__("Attention", method)
        self.anchor = assigns(target)
        self.inner = 0

    def visit_SimpleStatementLine(self, node):
        if self.inside and self.anchor(node):
            self.inner += 1

    def leave_SimpleStatementLine(self, original, updated):
        if self.inside and self.anchor(original):
            self.inner -= 1
        return updated

    def leave_Attribute(self, original, updated):
        if self.inner and m.matches(updated, _HEAD_DIM):
            self.hits += 1
            return updated.with_changes(attr=cst.Name("v_head_dim"))
        return updated
