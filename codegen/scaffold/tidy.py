"""Make a transformed package read like hand-written code.

After the transforms: ModelArgs fields nothing reads any more are dropped together with
their `from_hf_config` mapping (no dead options), imports nothing uses are removed, and the
files are formatted with ruff (line length 100, as the project itself).
"""

from __future__ import annotations

import shutil
import subprocess

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.commands.remove_unused_imports import RemoveUnusedImportsCommand

from codegen.scaffold.source import SourcePackage

# read by codegen itself (the adapter base), not by the package's own code
_ALWAYS_USED = {"tie_word_embeddings"}


def tidy(package: SourcePackage) -> None:
    drop_unused_fields(package)
    for filename, module in package.files.items():
        package.files[filename] = _remove_unused_imports(module, package.name, filename)


def drop_unused_fields(package: SourcePackage) -> None:
    if "args.py" not in package.files:
        return
    while True:
        fields = _dataclass_fields(package.files["args.py"])
        used = _attribute_names(package)
        unused = {name for name in fields if name not in used and name not in _ALWAYS_USED}
        if not unused:
            return
        package.files["args.py"] = package.files["args.py"].visit(_DropFields(unused))


def _dataclass_fields(module: cst.Module) -> set[str]:
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == "ModelArgs":
            return {
                line.body[0].target.value
                for line in statement.body.body
                if isinstance(line, cst.SimpleStatementLine)
                and isinstance(line.body[0], cst.AnnAssign)
                and isinstance(line.body[0].target, cst.Name)
            }
    return set()


class _AttributeCollector(cst.CSTVisitor):
    def __init__(self):
        self.names: set[str] = set()

    def visit_Attribute(self, node):
        # `hf_config.x` is the mapping itself, not a use of the house field
        if not (isinstance(node.value, cst.Name) and node.value.value == "hf_config"):
            self.names.add(node.attr.value)


def _attribute_names(package: SourcePackage) -> set[str]:
    collector = _AttributeCollector()
    for module in package.files.values():
        module.visit(collector)
    return collector.names


class _DropFields(cst.CSTTransformer):
    """Remove `name: T = default` lines of ModelArgs and `name=...` in its `cls(...)` call."""

    def __init__(self, names: set[str]):
        super().__init__()
        self.names = names

    def leave_SimpleStatementLine(self, original, updated):
        statement = updated.body[0]
        if (
            isinstance(statement, cst.AnnAssign)
            and isinstance(statement.target, cst.Name)
            and statement.target.value in self.names
        ):
            return cst.RemoveFromParent()
        return updated

    def leave_Call(self, original, updated):
        if not (isinstance(updated.func, cst.Name) and updated.func.value == "cls"):
            return updated
        args = [a for a in updated.args if a.keyword is None or a.keyword.value not in self.names]
        if len(args) != len(updated.args) and args:
            args[-1] = args[-1].with_changes(comma=updated.args[-1].comma)
        return updated.with_changes(args=args)


def _remove_unused_imports(module: cst.Module, package_name: str, filename: str) -> cst.Module:
    # the codemod resolves relative imports, so it needs the module's place in a package
    stem = filename.removesuffix(".py")
    context = CodemodContext(
        filename=filename,
        full_module_name=f"models.{package_name}.{stem}",
        full_package_name=f"models.{package_name}",
    )
    return RemoveUnusedImportsCommand(context).transform_module(module)


def ruff_format(files: dict[str, str]) -> dict[str, str]:
    """Format each file's text with ruff when it is installed (else return them as is)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        return files
    formatted = {}
    for filename, text in files.items():
        done = subprocess.run(
            [ruff, "format", "--line-length", "100", "--stdin-filename", filename, "-"],
            input=text,
            capture_output=True,
            text=True,
        )
        formatted[filename] = done.stdout if done.returncode == 0 else text
    return formatted
