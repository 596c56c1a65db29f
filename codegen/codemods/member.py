"""Insert a member into a set, frozenset, tuple or list: `frozenset({"llama", ...})`.

Supported model types, tuples of architecture classes, lists of names: any flat collection
whose elements are strings or (dotted) names. The member is quoted like its neighbours, or
written as a name when they are names.

    before:  SUPPORTED = frozenset({"llama", "qwen2"})
    after `add SUPPORTED qwen3`:
             SUPPORTED = frozenset({"llama", "qwen2", "qwen3"})
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from codegen.codemods import shape
from codegen.codemods.bracketed import BracketedCodemod


class Member(BracketedCodemod):
    kind = "members"

    def read(self, element):
        if not isinstance(element, cst.Element):
            return None
        key = shape.text(element.value)
        return None if key is None else (key, ())

    def build(self, template: cst.Element, key: str, values: Sequence[str]):
        return template.with_changes(value=shape.replace_leaf(template.value, key))

    def default(self, key: str, values: Sequence[str]):
        return cst.Element(cst.SimpleString(shape.render_string(key, None)))
