"""The class a name in a modeling file stands for, through however it was imported.

Installed modeling files import library classes from the defining module
(`from ...modeling_utils import PreTrainedModel`); remote code often goes through the package
(`from transformers import PreTrainedModel`, `import transformers` and then
`transformers.PreTrainedModel`, `from transformers import pytorch_utils` and then
`pytorch_utils.Conv1D`, `from transformers.generation import GenerationMixin`,
`from transformers.models.llama import LlamaPreTrainedModel`). Each step is read as text: a
package's `__init__.py` re-exports by the imports it indexes (transformers' `if
TYPE_CHECKING:` block), by its lazy `_import_structure` and by its star imports
(`package_exports`); a submodule is its file.
Only the analysed folder and the installed transformers are read; nothing is imported, and any
other package (torch's classes) is no class here.
"""

from __future__ import annotations

import os

from codegen.analyze.package_exports import (
    mentions,
    star_exports,
    star_sources,
    structure_module,
)
from codegen.analyze.source import ClassInfo, Project, SourceFile, transformers_dir

_MAX_HOPS = 8  # re-exports followed before giving up (and the guard against import cycles)


def library_class(project: Project, sf: SourceFile, spelled: str) -> ClassInfo | None:
    """The class `spelled` (`Conv1D`, `transformers.PreTrainedModel`) names in `sf`: defined
    there, or imported from the folder's own files or transformers'; None for anything else."""
    head, *rest = spelled.split(".")
    found = _member(project, sf, head, 0)
    for part in rest:
        if not isinstance(found, SourceFile):
            return None
        found = _member(project, found, part, 0)
    return found if isinstance(found, ClassInfo) else None


def _member(project: Project, sf: SourceFile, name: str, hops: int):
    """What `name` is in the module `sf`: a ClassInfo, a SourceFile (a module), or None."""
    if hops > _MAX_HOPS:
        return None
    if name in sf.classes:
        return sf.classes[name]
    if name in sf.imports:
        spec, imported = sf.imports[name]
        module = _module_file(project, sf, spec)
        if imported is None or module is None:
            return module
        return _member(project, module, imported, hops + 1)
    if os.path.basename(sf.path) != "__init__.py":
        return None
    package = os.path.dirname(sf.path)
    served = structure_module(sf, name)  # the lazy `_import_structure`
    if served is not None:
        module = _load(project, os.path.join(package, *served.split(".")))
        return _member(project, module, name, hops + 1) if module is not None else None
    submodule = _load(project, os.path.join(package, name))  # `transformers.pytorch_utils`
    return submodule if submodule is not None else _starred(project, sf, name, hops)


def _starred(project: Project, sf: SourceFile, name: str, hops: int):
    """`name` as the package `sf` re-exports it by `from .modeling_x import *`: the first
    star-imported module whose text mentions it and that exports it."""
    for spec in star_sources(sf):
        stem = _stem(sf, spec)
        if stem is None:
            continue
        where = stem + ".py" if os.path.isfile(stem + ".py") else stem
        if not mentions(where, name):
            continue
        module = _load(project, stem)
        if module is not None and star_exports(module, name):
            found = _member(project, module, name, hops + 1)
            if found is not None:
                return found
    return None


def _stem(sf: SourceFile, spec: str) -> str | None:
    """The path, without `.py`, of the module an import spec seen in `sf` names (the
    folder's own files by a relative spec, transformers' by an absolute one)."""
    if spec.startswith("."):
        level = len(spec) - len(spec.lstrip("."))
        base = os.path.dirname(os.path.abspath(sf.path))
        for _ in range(level - 1):
            base = os.path.dirname(base)
        rest = spec.lstrip(".")
        return os.path.join(base, *rest.split(".")) if rest else base
    top, *parts = spec.split(".")
    library = transformers_dir() if top == "transformers" else None
    return os.path.join(library, *parts) if library else None


def _module_file(project: Project, sf: SourceFile, spec: str) -> SourceFile | None:
    """The parsed module (or package `__init__.py`) an import spec seen in `sf` names."""
    stem = _stem(sf, spec)
    found = _load(project, stem) if stem is not None else None
    if found is not None or not spec.startswith("."):
        return found
    path = project.module_path(sf, spec)  # a copy out of the tree: `..llama.modeling_llama`
    return project.try_load(path) if path is not None else None


def _load(project: Project, stem: str) -> SourceFile | None:
    """`stem.py`, else the package `stem/__init__.py`."""
    for path in (stem + ".py", os.path.join(stem, "__init__.py")):
        if os.path.isfile(path):
            return project.try_load(path)
    return None
