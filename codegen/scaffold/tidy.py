"""Make a transformed package read like hand-written code.

After the transforms: branches no accepted config reaches are folded away
(`fold_constant_branches`, `drop_pinned_attributes`: what `codegen lint --dead-code`
checks), a written-out attention's k/v repeat goes where every query head has its own kv
head (`drop_kv_repeat`: a copy that changes nothing) and the kv head count with it
(`drop_kv_heads`: a field that can only equal n_heads), an empty FIXED_SETTINGS goes with
its check (`drop_empty_settings`), a constructor parameter nothing reads goes with the
arguments passed for it (`drop_unread_parameters`: a weightless norm's `dim`, a block's
`layer_id`), ModelArgs fields nothing reads any more are dropped together with their
`from_hf_config` mapping (no dead options), imports nothing uses are removed, and the files
are formatted with ruff (line length 100, as the project itself).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import libcst as cst

from codegen.analyze import walk
from codegen.errors import CodegenError
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_empty_settings import DropEmptySettings
from codegen.transforms.drop_kv_heads import DropKvHeads
from codegen.transforms.drop_kv_repeat import DropKvRepeat
from codegen.transforms.drop_pinned_attributes import DropPinnedAttributes
from codegen.transforms.drop_unread_parameters import DropUnreadParameters
from codegen.transforms.edits import field_name
from codegen.transforms.fold_constant_branches import FoldConstantBranches

# read by codegen itself (the adapter base), not by the package's own code
_ALWAYS_USED = {"tie_word_embeddings"}


def tidy(package: SourcePackage) -> None:
    DropKvRepeat().apply(package)  # after align_config_fields: the counts as the target reads them
    DropKvHeads().apply(package)  # a kv count that can only be n_heads: no field at all
    FoldConstantBranches().apply(package)  # dead branches first: they keep fields read
    DropPinnedAttributes().apply(package)
    DropEmptySettings().apply(package)  # a table pinning nothing, and the call checking it
    DropUnreadParameters().apply(package)  # after the folds: they remove parameters' readers
    drop_unused_definitions(package)
    drop_unused_fields(package)
    for filename, module in package.files.items():
        package.files[filename] = _remove_unused_imports(module, package.visit)


def drop_unused_definitions(package: SourcePackage) -> None:
    """Remove model.py/args.py functions nothing uses any more (a window mask whose only
    call was folded away), as the dead-code check's DC4 finds them."""
    from codegen.quality.rules.unused_definition import unused_definitions

    while True:
        found = unused_definitions(package.files)
        if not found:
            return
        functions = {
            filename: [node for node in dead if isinstance(node, cst.FunctionDef)]
            for filename, dead in found.items()
        }
        if not any(functions.values()):
            return  # an unused class may be API a test builds: DC4 reports it
        for filename, dead in functions.items():
            body = [s for s in package.files[filename].body if s not in dead]
            package.files[filename] = package.files[filename].with_changes(body=body)


def drop_unused_fields(package: SourcePackage) -> None:
    if "args.py" not in package.files:
        return
    # only args.py changes in the loop: the other files' reads are collected once
    others = _attribute_names(
        {name: module for name, module in package.files.items() if name != "args.py"},
        walk.visit,  # reads only: no rebuilt tree
    )
    while True:
        fields = _dataclass_fields(package.files["args.py"])
        used = others | _attribute_names({"args.py": package.files["args.py"]}, walk.visit)
        unused = {name for name in fields if name not in used and name not in _ALWAYS_USED}
        if not unused:
            return
        package.edit("args.py", _DropFields(unused))


def _dataclass_fields(module: cst.Module) -> set[str]:
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == "ModelArgs":
            return {name for name in map(field_name, statement.body.body) if name}
    return set()


class _AttributeCollector(cst.CSTVisitor):
    def __init__(self):
        self.names: set[str] = set()

    def visit_Attribute(self, node):
        # `hf_config.x` is the mapping itself, not a use of the house field
        if not (isinstance(node.value, cst.Name) and node.value.value == "hf_config"):
            self.names.add(node.attr.value)


def _attribute_names(files: dict[str, cst.Module], visit=cst.Module.visit) -> set[str]:
    collector = _AttributeCollector()
    for module in files.values():
        visit(module, collector)
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


def _remove_unused_imports(module: cst.Module, visit=cst.Module.visit) -> cst.Module:
    """Drop imported names the module never mentions (and imports left empty).

    Generated modules are plain (no `__getattr__`, no star imports), so a name is used
    exactly when it appears as an identifier outside import statements or in `__all__`.
    A deliberate side-effect import (`# noqa: F401`) is kept.
    """
    used = _used_names(module, walk.visit)  # reads only: no rebuilt tree
    return visit(module, _DropUnusedImports(used))


class _NameCollector(cst.CSTVisitor):
    def __init__(self):
        self.names: set[str] = set()

    def visit_Import(self, node):
        return False

    def visit_ImportFrom(self, node):
        return False

    def visit_Name(self, node):
        self.names.add(node.value)

    def visit_SimpleString(self, node):
        self.names.add(node.evaluated_value)  # names listed in __all__


def _used_names(module: cst.Module, visit=cst.Module.visit) -> set[str]:
    collector = _NameCollector()
    visit(module, collector)
    return collector.names


class _DropUnusedImports(cst.CSTTransformer):
    """Top-level imports only (generated modules import nothing elsewhere); a dropped line
    hands its leading blank lines and comments to the line after it."""

    def __init__(self, used: set[str]):
        super().__init__()
        self.used = used

    def leave_Module(self, original, updated):
        body, carried = [], []
        for line in updated.body:
            if carried:
                line = line.with_changes(leading_lines=[*carried, *line.leading_lines])
                carried = []
            pruned = self._prune(line)
            if pruned is None:
                carried = list(line.leading_lines)
                continue
            body.append(pruned)
        return updated.with_changes(body=body)

    def _prune(self, line):
        if not isinstance(line, cst.SimpleStatementLine):
            return line
        statement = line.body[0]
        if not isinstance(statement, (cst.Import, cst.ImportFrom)) or "noqa" in _comment(line):
            return line
        if isinstance(statement, cst.ImportFrom):
            if isinstance(statement.module, cst.Name) and statement.module.value == "__future__":
                return line
            if isinstance(statement.names, cst.ImportStar):
                return line
        kept = [alias for alias in statement.names if _bound_name(alias) in self.used]
        if not kept:
            return None
        if len(kept) == len(statement.names):
            return line
        kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return line.with_changes(body=[statement.with_changes(names=kept)])


def _bound_name(alias: cst.ImportAlias) -> str:
    if alias.asname is not None:
        return alias.asname.name.value
    name = alias.name
    while isinstance(name, cst.Attribute):  # `import a.b` binds `a`
        name = name.value
    return name.value


def _comment(line: cst.SimpleStatementLine) -> str:
    comment = line.trailing_whitespace.comment
    return comment.value if comment is not None else ""


# ruff invocations: sort imports (isort rules only), then format; the project's own style
_RUFF_STEPS = (
    [
        "check",
        "--isolated",
        "--select",
        "I",
        "--fix",
        "--line-length",
        "100",
        "--config",
        "lint.isort.known-first-party = ['codegen']",  # house layers group with the package
    ],
    ["format", "--isolated", "--line-length", "100"],
    # a line the formatter cannot shorten is one long string (a checkpoint key, a message
    # naming a long model type): it is marked as deliberate, as a hand-written file would
    ["check", "--isolated", "--select", "E501", "--line-length", "100", "--add-noqa"],
)


def ruff_binary() -> str:
    """The ruff executable: the one the `ruff` package (a runtime dependency) ships, found
    without PATH, else one on PATH. Formatting is not optional: without ruff, one line."""
    try:
        from ruff.__main__ import find_ruff_bin

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff")
        if found is None:
            raise CodegenError(
                "ruff is required to format generated code; install it (pip install ruff)"
            ) from None
        return found


def ruff_format(files: dict[str, str]) -> dict[str, str]:
    """Sort imports, format, and mark lines no formatting can shorten, with ruff: one ruff
    run per step over a temporary folder holding every file (a run per file cost a process
    start each, ~20 per package). A file ruff cannot parse is left as it was."""
    ruff = ruff_binary()
    with tempfile.TemporaryDirectory(prefix="codegen-format-") as directory:
        folder = Path(directory)
        for filename, text in files.items():
            (folder / filename).write_text(text)
        for step in _RUFF_STEPS:
            subprocess.run([ruff, *step, "--quiet", str(folder)], capture_output=True, text=True)
        return {filename: (folder / filename).read_text() for filename in files}
