"""Rename a package: its spec's name and the HF model types it serves (its prose: retarget_text)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import expression, run


class RenameModel(Transform):
    """The spec becomes `name` serving `model_types`."""

    name = "rename_model"

    def apply(self, package, features=None, *, name: str, model_types: list[str], title: str):
        run(package, "spec.py", _SpecFields(name, sorted(model_types)))
        package.name = name


class _SpecFields(cst.CSTTransformer):
    """`ModelSpec(name=..., supported_model_types=frozenset({...}))` keyword values."""

    def __init__(self, name: str, model_types: list[str]):
        super().__init__()
        types = ", ".join(f'"{t}"' for t in model_types)
        self.values = {"name": f'"{name}"', "supported_model_types": f"frozenset({{{types}}})"}
        self.hits = 0

    def leave_Arg(self, original, updated):
        if m.matches(updated, m.Arg(keyword=m.Name(m.MatchIfTrue(self.values.__contains__)))):
            self.hits += 1
            return updated.with_changes(value=expression(self.values[updated.keyword.value]))
        return updated
