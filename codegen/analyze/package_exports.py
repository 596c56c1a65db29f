"""What a package's `__init__.py` exports beyond the names it imports, read as text.

transformers' packages export lazily: `_import_structure = {"modeling_utils":
["PreTrainedModel"], ...}` (plus `_import_structure["utils"] = [...]`, `.extend([...])`,
`+= [...]` under backend checks) maps each submodule to the names it serves, and a model's
package re-exports its files by `from .modeling_llama import *` (in `if TYPE_CHECKING:`; at
run time the same `__all__` lists through `define_import_structure`). Both are read from
the syntax tree; nothing is imported. The `utils.dummy_*` modules stand in for a missing
backend, so they never count as where a name is defined.
"""

from __future__ import annotations

import os
from functools import lru_cache

import libcst as cst
import libcst.matchers as m

from codegen.analyze.source import SourceFile, dotted

STRUCTURE = "_import_structure"

_KEY = m.Subscript(value=m.Name(STRUCTURE), slice=[m.SubscriptElement(m.Index(m.SimpleString()))])


def structure_module(sf: SourceFile, name: str) -> str | None:
    """The submodule (`generation.utils`, relative to the package) that `sf`'s
    `_import_structure` serves `name` from, or None."""
    return _structure(sf).get(name)


def star_sources(sf: SourceFile) -> list[str]:
    """The specs of `sf`'s `from <spec> import *` lines, anywhere in the file (the
    `if TYPE_CHECKING:` block included), in order; dummy stand-ins left out."""
    found = m.findall(sf.module, m.ImportFrom(names=m.ImportStar()))
    specs = ["." * len(node.relative) + (dotted(node.module) or "") for node in found]
    return [spec for spec in specs if not is_stand_in(spec)]


def star_exports(sf: SourceFile, name: str) -> bool:
    """`from <sf> import *` binds `name`: listed in its `__all__`, or, without one, a
    public name."""
    if "__all__" in sf.assigns:
        return name in sf.all_names
    return not name.startswith("_")


def is_stand_in(spec: str) -> bool:
    """`spec` names a `dummy_*` module, a placeholder for a missing backend's objects."""
    return spec.rsplit(".", 1)[-1].startswith("dummy_")


@lru_cache(maxsize=1024)
def mentions(path: str, name: str) -> bool:
    """`name` occurs in the text of the module `path` (a file, or any file of a package's
    folder): a cheap test before the files a star import reaches are parsed."""
    if os.path.isfile(path):
        return name in _text(path)
    for folder, _, files in os.walk(path):
        if any(name in _text(os.path.join(folder, f)) for f in files if f.endswith(".py")):
            return True
    return False


def _structure(sf: SourceFile) -> dict[str, str]:
    """name -> submodule, from every string list `_import_structure` is given; the first
    submodule that is not a dummy stand-in wins."""
    served: dict[str, str] = {}
    for key, names in _entries(sf.module):
        if is_stand_in(key):
            continue
        for name in names:
            served.setdefault(name, key)
    return served


def _entries(module: cst.Module):
    """(submodule, names) for each literal the file gives `_import_structure`: the dict it
    is built as, an item assigned, extended or added to."""
    for node in m.findall(module, m.Assign(targets=[m.AssignTarget(m.Name(STRUCTURE))])):
        if isinstance(node.value, cst.Dict):
            for element in node.value.elements:
                if isinstance(element, cst.DictElement):
                    yield from _entry(element.key, element.value)
    for node in m.findall(module, m.Assign(targets=[m.AssignTarget(_KEY)])):
        yield from _entry(node.targets[0].target.slice[0].slice.value, node.value)
    for node in m.findall(module, m.AugAssign(target=_KEY, operator=m.AddAssign())):
        yield from _entry(node.target.slice[0].slice.value, node.value)
    extend = m.Call(func=m.Attribute(value=_KEY, attr=m.Name("extend")), args=[m.Arg()])
    for node in m.findall(module, extend):
        yield from _entry(node.func.value.slice[0].slice.value, node.args[0].value)


def _entry(key, value):
    """(key, names) where `key` is a string and `value` a list of string literals."""
    if not isinstance(key, cst.SimpleString) or not isinstance(value, cst.List | cst.Tuple):
        return
    names = [
        e.value.evaluated_value for e in value.elements if isinstance(e.value, cst.SimpleString)
    ]
    yield key.evaluated_value, names


def _text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return ""
