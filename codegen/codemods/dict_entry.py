"""Insert `"key": value` into a dict literal.

Covers every dict a registry is spelled as: a plain or annotated module-level dict
(`MODELS: Dict[str, Tuple[str, str]] = {...}`), a `ClassVar` dict in a class body, the dict
passed to `NAME.update({...})`, and `dict({...})`. Values may be strings (dotted
`"pkg.mod.Class"` or colon `"pkg.mod:Class"`), names, or tuples of those, wrapped in
parentheses across lines or not; the new value copies the nearest neighbour with the same
number of values.

    before:  MODELS = {
                 "llama": "llama.spec:SPEC",
             }
    after `add MODELS qwen2 qwen2.spec:SPEC`:
             MODELS = {
                 "llama": "llama.spec:SPEC",
                 "qwen2": "qwen2.spec:SPEC",
             }
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from codegen.codemods import shape
from codegen.codemods.bracketed import BracketedCodemod
from codegen.errors import CodegenError


class DictEntry(BracketedCodemod):
    kind = "dict"

    def read(self, element):
        if not isinstance(element, cst.DictElement):
            return None  # `**other` spreads are kept but are not entries
        key = shape.text(element.key)
        if key is None:
            return None
        return key, shape.value_texts(element.value)

    def build(self, template: cst.DictElement, key: str, values: Sequence[str]):
        return template.with_changes(
            key=shape.replace_leaf(template.key, key), value=shape.fill(template.value, values)
        )

    def value_node(self, element):
        return element.value if isinstance(element, cst.DictElement) else None

    def build_expression(self, template: cst.DictElement, key: str, value: str):
        try:
            node = cst.parse_expression(value.strip())
        except cst.ParserSyntaxError as err:
            raise CodegenError(
                f"value {value!r} is not a Python expression: {err.message}"
            ) from None
        return template.with_changes(key=shape.replace_leaf(template.key, key), value=node)

    def default(self, key: str, values: Sequence[str]):
        return cst.DictElement(
            key=cst.SimpleString(shape.render_string(key, None)), value=_default_value(values)
        )


def _default_value(values: Sequence[str]) -> cst.BaseExpression:
    strings = [cst.SimpleString(shape.render_string(v, None)) for v in values]
    if len(strings) == 1:
        return strings[0]
    return cst.Tuple([cst.Element(s) for s in strings])
