"""Swap one model's name for another's inside copied code: `qwen2` -> `llama`, `Qwen2` -> `Llama`.

Why: an import line or a dispatch branch is copied from its neighbour, and the neighbour
spells its own model's name in module paths, aliases and class names. Only whole name
parts are replaced (`qwen2_spec` -> `llama_spec`, `Qwen2Model` -> `LlamaModel`), never a
substring inside another word (`qwen20` stays).
"""

from __future__ import annotations

import re

import libcst as cst

from codegen.targets.variables import camel


def swap(text: str, old: str, new: str) -> str:
    """`text` with every whole-part occurrence of `old` (snake or Camel) replaced by `new`."""
    text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(old)}(?![A-Za-z0-9])", new, text)
    old_camel, new_camel = camel(old), camel(new)
    if old_camel != old:
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(old_camel)}(?![a-z0-9])", new_camel, text)
    return text


class Renamer(cst.CSTTransformer):
    """Applies `swap` to every name and string in a subtree."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        return updated_node.with_changes(value=swap(updated_node.value, self.old, self.new))

    def leave_SimpleString(
        self, original_node: cst.SimpleString, updated_node: cst.SimpleString
    ) -> cst.SimpleString:
        return updated_node.with_changes(value=swap(updated_node.value, self.old, self.new))
