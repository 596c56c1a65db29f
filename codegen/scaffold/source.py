"""A model package held as libcst modules while transforms edit it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import libcst as cst

from codegen.errors import CodegenError
from codegen.transforms import pruned_visit

# the files of the house layout that transforms may edit, in reading order
PACKAGE_FILES = (
    "__init__.py",
    "args.py",
    "model.py",
    "rope.py",
    "state_dict_adapter.py",
    "spec.py",
    "parallelize.py",  # the shard plan (a table) the package's engines apply
)


@lru_cache(maxsize=64)
def parse_source(text: str) -> cst.Module:
    """`cst.parse_module(text)`, once per text: libcst trees are immutable (edits return new
    ones), so the planner's read of a reference and the build's copy share one parse."""
    return cst.parse_module(text)


@dataclass
class SourcePackage:
    """The files of one model package, parsed; `name` is the package (model) name."""

    name: str
    files: dict[str, cst.Module] = field(default_factory=dict)
    # the rule ids whose transform changed a file, in order (a rule that found nothing to
    # edit is not applied, and the docstring does not list it)
    applied: list[str] = field(default_factory=list)
    # which node types each subtree holds, shared by the edits (see `visit`)
    index: pruned_visit.TypeIndex = field(default_factory=pruned_visit.TypeIndex, repr=False)

    @classmethod
    def from_directory(cls, directory: Path, name: str | None = None) -> SourcePackage:
        package = cls(name or directory.name)
        for filename in PACKAGE_FILES:
            path = directory / filename
            if path.is_file():
                try:
                    package.files[filename] = parse_source(path.read_text())
                except cst.ParserSyntaxError as err:
                    raise CodegenError(str(err).splitlines()[0], path=str(path)) from None
        if "model.py" not in package.files:
            raise CodegenError("not a model package (no model.py)", path=str(directory))
        return package

    def module(self, filename: str) -> cst.Module:
        if filename not in self.files:
            raise KeyError(f"{self.name} has no {filename}")
        return self.files[filename]

    def edit(self, filename: str, transformer: cst.CSTTransformer) -> None:
        """Run one libcst transformer over one file."""
        self.files[filename] = self.visit(self.module(filename), transformer)

    def visit(self, node, visitor):
        """`node.visit(visitor)` for a node of this package, entering only the subtrees
        that hold a node type the visitor handles (`codegen.transforms.pruned_visit`)."""
        return pruned_visit.visit(node, visitor, self.index)

    def render(self) -> dict[str, str]:
        return {filename: module.code for filename, module in self.files.items()}
