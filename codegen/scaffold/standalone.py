"""Write the shared layers a generated package uses into the package itself.

A user copies a generated package into their engine without installing codegen: its model,
args, adapter and RoPE import torch and the standard library only. The one implementation
of each shared piece lives in codegen (`codegen/layers`, the adapter base, the settings
check); the modules the package imports (and the ones those import) are copied in
verbatim but for their imports, which become relative. Only `spec.py` (the house registry
glue) and the generated parity test keep importing codegen.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import libcst.matchers as m

import codegen
from codegen.transforms import pruned_visit

# codegen module -> the file it becomes inside a generated package
VENDORED = {
    "codegen.layers.norm": "norm.py",
    "codegen.layers.experts": "experts.py",
    "codegen.layers.grouped_mm": "grouped_mm.py",
    "codegen.layers.rope": "rope.py",
    "codegen.layers.alibi": "alibi.py",
    "codegen.adapter": "adapter_base.py",
    "codegen.config_checks": "config_checks.py",
    "codegen.layers.parallel": "parallel.py",
    "codegen.layers.lifecycle": "lifecycle.py",
    "codegen.layers.packing": "packing.py",
    "codegen.layers.activations": "activations.py",
}
GLUE = ("spec.py",)  # keeps its codegen import: it is the registry's own interface

# `__init__.py` re-exports the spec lazily, so importing the package (its model, args,
# adapter) does not import the registry glue
LAZY_SPEC = """

def __getattr__(name: str):
    if name == "SPEC":  # the house registry glue; the model itself does not need it
        from .spec import SPEC

        return SPEC
    raise AttributeError(name)
"""


def vendor(
    files: dict[str, str | cst.Module],
    test_file: str | None = None,
    index: pruned_visit.TypeIndex | None = None,
) -> dict[str, str]:
    """`files` (texts, or the parsed modules of a `SourcePackage`, whose `index` spares
    re-walking them) with codegen imports made relative and the imported modules added."""
    needed: set[str] = set()
    out: dict[str, str] = {}
    # a package's own module of the same name (deepseek's rope.py) keeps its name
    local = {
        module: name if name not in files else f"shared_{name}" for module, name in VENDORED.items()
    }
    for filename, text in files.items():
        if filename in GLUE or filename == test_file:
            out[filename] = _text(text)
            continue
        rewriter = _Relative(local)
        module = cst.parse_module(text) if isinstance(text, str) else text
        out[filename] = pruned_visit.visit(module, rewriter, index).code
        needed |= rewriter.used
    copied: set[str] = set()
    while needed - copied:  # a copied module's own codegen imports (experts -> grouped_mm)
        module = min(needed - copied)
        rewriter = _Relative(local)
        out[local[module]] = cst.parse_module(_source(module)).visit(rewriter).code
        copied.add(module)
        needed |= rewriter.used
    if "__init__.py" in out:
        out["__init__.py"] = _lazy_spec(out["__init__.py"])
    return out


def _text(module: str | cst.Module) -> str:
    return module if isinstance(module, str) else module.code


def _lazy_spec(text: str) -> str:
    """Drop `from .spec import SPEC` (and `__all__`) for a module `__getattr__`."""
    module = cst.parse_module(text)
    body = [
        statement
        for statement in module.body
        if not m.matches(
            statement,
            m.SimpleStatementLine(
                body=[
                    m.ImportFrom(module=m.Name("spec"))
                    | m.Assign(targets=[m.AssignTarget(m.Name("__all__"))])
                ]
            ),
        )
    ]
    if len(body) == len(module.body):
        return text
    return module.with_changes(body=body).code.rstrip("\n") + "\n" + LAZY_SPEC


def _source(module: str) -> str:
    root = Path(codegen.__file__).resolve().parent
    return root.joinpath(*module.split(".")[1:]).with_suffix(".py").read_text()


class _Relative(cst.CSTTransformer):
    def __init__(self, local: dict[str, str]):
        super().__init__()
        self.local = local
        self.used: set[str] = set()

    def leave_ImportFrom(self, original, updated):
        if updated.relative or updated.module is None:
            return updated
        name = _dotted(updated.module)
        if name not in self.local:
            return updated
        self.used.add(name)
        local = self.local[name].removesuffix(".py")
        return updated.with_changes(module=cst.Name(local), relative=[cst.Dot()])


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""
