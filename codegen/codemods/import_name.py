"""Insert a name into a side-effect `from PKG import (...)` list.

Some frameworks register models by importing their sub-packages for the side effect, in one
parenthesised list whose names carry `# noqa: F401`. The new name copies its neighbour's
line, pragma included; an `as` alias is renamed with it.

    before:  from pkg.models import (
                 llama,  # noqa: F401
                 qwen3,  # noqa: F401
             )
    after `add 'from pkg.models' qwen2`:
                 llama,  # noqa: F401
                 qwen2,  # noqa: F401
                 qwen3,  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from codegen.codemods.bracketed import BracketedCodemod
from codegen.codemods.locate import dotted
from codegen.codemods.rename import swap
from codegen.errors import CodegenError


class ImportName(BracketedCodemod):
    kind = "import_names"

    def read(self, element):
        if not isinstance(element, cst.ImportAlias):
            return None
        key = dotted(element.name)
        return None if key is None else (key, ())

    def build(self, template: cst.ImportAlias, key: str, values: Sequence[str]):
        if not key.isidentifier():
            raise CodegenError(f"{key!r} is not a module name")
        old = dotted(template.name) or ""
        asname = template.asname
        if asname is not None and isinstance(asname.name, cst.Name):
            renamed = cst.Name(swap(asname.name.value, old, key))
            asname = asname.with_changes(name=renamed)
        return template.with_changes(name=cst.Name(key), asname=asname)

    def default(self, key: str, values: Sequence[str]):
        return cst.ImportAlias(name=cst.Name(key))
