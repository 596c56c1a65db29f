"""Rename a package: its spec's name and HF model types, and the docstrings that name it."""

from __future__ import annotations

import libcst as cst

from codegen.transforms.base import Transform
from codegen.transforms.edits import code_of, expression, run


class RenameModel(Transform):
    """The spec becomes `name` serving `model_types`; module docstrings name the new model."""

    name = "rename_model"

    def apply(self, package, features=None, *, name: str, model_types: list[str], title: str):
        old_name = package.name
        run(package, "spec.py", _SpecFields(name, sorted(model_types)))
        for filename in list(package.files):
            package.edit(filename, _RetitleDocstring(old_name, title))
        package.name = name


class _SpecFields(cst.CSTTransformer):
    """`ModelSpec(name=..., supported_model_types=frozenset({...}))` keyword values."""

    def __init__(self, name: str, model_types: list[str]):
        super().__init__()
        types = ", ".join(f'"{t}"' for t in model_types)
        self.values = {"name": f'"{name}"', "supported_model_types": f"frozenset({{{types}}})"}
        self.hits = 0

    def leave_Arg(self, original, updated):
        if updated.keyword is not None and updated.keyword.value in self.values:
            self.hits += 1
            return updated.with_changes(value=expression(self.values[updated.keyword.value]))
        return updated


class _RetitleDocstring(cst.CSTTransformer):
    """Replace the reference's display name in the module docstring's first line."""

    def __init__(self, old_name: str, title: str):
        super().__init__()
        self.old_name, self.title = old_name, title
        self.hits = 0

    def leave_Module(self, original, updated):
        if not updated.body:
            return updated
        first = updated.body[0]
        if not (
            isinstance(first, cst.SimpleStatementLine)
            and isinstance(first.body[0], cst.Expr)
            and isinstance(first.body[0].value, cst.SimpleString)
        ):
            return updated
        text = code_of(first.body[0].value)
        head, sep, tail = text.partition("\n")
        for form in (self.old_name, self.old_name.capitalize(), _display(self.old_name)):
            head = head.replace(form, self.title)
        docstring = cst.SimpleString(head + sep + tail)
        line = first.with_changes(body=[first.body[0].with_changes(value=docstring)])
        return updated.with_changes(body=[line, *updated.body[1:]])


def _display(name: str) -> str:
    """llama -> Llama, qwen3_moe -> Qwen3-MoE, deepseek_v3 -> DeepSeek-V3 (docstring forms)."""
    known = {"qwen3_moe": "Qwen3-MoE", "deepseek_v3": "DeepSeek-V3"}
    return known.get(name, name.capitalize())
