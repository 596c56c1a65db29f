"""Edits shared by the transforms that give each MoE layer its own entry of a config field
that is an int or a per-layer list (`layer_top_k`, `layer_experts`): the MoE told its layer,
a ModelArgs field retyped `int | list[int]`, the `cls(...)` call of `from_hf_config`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.edits import EditError, code_of, statements


def moe_layer_id(package) -> str:
    """Make `MoE.__init__` take the block's layer index (once); return the block's name."""
    layer = edits.ensure_layer_id(package)
    if "layer_id" in edits.param_names(package, "MoE", "__init__"):
        return layer
    edits.replace_expressions(
        package,
        "model.py",
        "TransformerBlock",
        "__init__",
        lambda node: m.matches(node, m.Call(func=m.Name("MoE"))),
        lambda call: edits.with_arg(call, layer),
    )
    edits.add_param(package, "MoE", "__init__", "layer_id: int")
    return layer


def cls_call(package, keyword_name: str) -> cst.Call:
    """The `cls(...)` of ModelArgs.from_hf_config passing `keyword_name`."""
    found = m.findall(package.files["args.py"], m.Call(func=m.Name("cls")))
    found = [c for c in found if keyword(c, keyword_name) is not None]
    if not found:
        raise EditError(f"ModelArgs.from_hf_config builds no cls(..., {keyword_name}=...)")
    return found[0]


def keyword(call: cst.Call, name: str) -> cst.BaseExpression | None:
    return next((a.value for a in call.args if a.keyword and a.keyword.value == name), None)


class RetypeField(cst.CSTTransformer):
    """ModelArgs' `<name>: int = N` -> `line` formatted with `default=N` (its new type and
    comment)."""

    def __init__(self, name: str, line: str) -> None:
        super().__init__()
        self.name, self.line = name, line
        self.depth = 0
        self.hits = 0

    def visit_ClassDef(self, node) -> None:
        self.depth += node.name.value == "ModelArgs"

    def leave_ClassDef(self, original, updated):
        self.depth -= original.name.value == "ModelArgs"
        return updated

    def leave_SimpleStatementLine(self, original, updated):
        target = m.AnnAssign(target=m.Name(self.name), value=m.DoNotCare())
        if not self.depth or not m.matches(updated.body[0], target):
            return updated
        self.hits += 1
        default = code_of(updated.body[0].value)
        (line,) = statements(self.line.format(default=default))
        return line.with_changes(leading_lines=updated.leading_lines)
