"""Insert a member into a `Literal[...]` type: `ModelType = Literal["llama", "qwen2"]`.

Typed configs often list the accepted model types as a `Literal`; it is a registry too.

    before:  ModelType = Literal["llama", "qwen2"]
    after `add ModelType qwen3`:
             ModelType = Literal["llama", "qwen2", "qwen3"]
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from codegen.codemods import shape
from codegen.codemods.bracketed import BracketedCodemod


class LiteralMember(BracketedCodemod):
    kind = "literal"

    def read(self, element):
        if not isinstance(element, cst.SubscriptElement) or not isinstance(
            element.slice, cst.Index
        ):
            return None
        key = shape.text(element.slice.value)
        return None if key is None else (key, ())

    def build(self, template: cst.SubscriptElement, key: str, values: Sequence[str]):
        index = template.slice
        return template.with_changes(
            slice=index.with_changes(value=shape.replace_leaf(index.value, key))
        )

    def default(self, key: str, values: Sequence[str]):
        return cst.SubscriptElement(cst.Index(cst.SimpleString(shape.render_string(key, None))))
