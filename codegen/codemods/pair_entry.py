"""Insert `(key, value, ...)` into a list of pairs: `OrderedDict([...])`, `dict([...])`.

The transformers auto mappings and NeMo AutoModel's architecture mapping are lists of tuples
inside `OrderedDict(...)`, one tuple per line or spread over several lines, sometimes with a
nested `(module, class)` tuple or an optional third element. The new tuple copies the
nearest neighbour with the same number of values, line breaks included.

    before:  NAMES = OrderedDict(
                 [
                     ("llama", "LlamaModel"),
                     ("qwen3", "Qwen3Model"),
                 ]
             )
    after `add NAMES qwen3_moe Qwen3MoeModel`:
                     ("llama", "LlamaModel"),
                     ("qwen3", "Qwen3Model"),
                     ("qwen3_moe", "Qwen3MoeModel"),
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from codegen.codemods import shape
from codegen.codemods.bracketed import BracketedCodemod


class PairEntry(BracketedCodemod):
    kind = "pairs"

    def read(self, element):
        if not isinstance(element, cst.Element) or not isinstance(element.value, cst.Tuple):
            return None
        items = element.value.elements
        if not items or not isinstance(items[0], cst.Element):
            return None
        key = shape.text(items[0].value)
        if key is None:
            return None
        texts = shape.value_texts(element.value)
        return key, None if texts is None else texts[1:]

    def build(self, template: cst.Element, key: str, values: Sequence[str]):
        return template.with_changes(value=shape.fill(template.value, [key, *values]))

    def default(self, key: str, values: Sequence[str]):
        strings = [cst.SimpleString(shape.render_string(v, None)) for v in (key, *values)]
        return cst.Element(cst.Tuple([cst.Element(s) for s in strings]))
