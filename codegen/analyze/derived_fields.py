"""Which config fields a configuration class derives from which others.

A config class often turns its switches into the fields the model reads: Qwen2-MoE's
`use_sliding_window` and `max_window_layers` become `layer_types` and `sliding_window` in
`__post_init__`. A package that reads `layer_types` realises those switches although it
never reads them by name. Read statically: every `self.X = <expression>` in the
configuration file's classes makes X derived from each `self.Y` / name Y the expression
uses.
"""

from __future__ import annotations

from collections import defaultdict

import libcst as cst
import libcst.matchers as m

from codegen.analyze import walk
from codegen.analyze.walk import findall


def derived_fields(source: str | cst.Module) -> dict[str, frozenset[str]]:
    """field -> every field derived from it, directly or through others (`source`: the
    configuration file's text, or its parsed module)."""
    direct: dict[str, set[str]] = defaultdict(set)
    module = cst.parse_module(source) if isinstance(source, str) else source
    assigns = _Assigns()
    walk.visit(module, assigns)  # reads only: matchers' findall would rebuild the tree
    pattern = m.Assign(targets=[m.AssignTarget(_SELF_ATTRIBUTE)])
    for node in (node for node in assigns.found if m.matches(node, pattern)):
        target = node.targets[0].target.attr.value
        for used in _used(node.value):
            if used != target:
                direct[used].add(target)
    closure: dict[str, frozenset[str]] = {}
    for field in direct:
        seen: set[str] = set()
        stack = list(direct[field])
        while stack:
            item = stack.pop()
            if item not in seen:
                seen.add(item)
                stack.extend(direct.get(item, ()))
        closure[field] = frozenset(seen)
    return closure


_SELF_ATTRIBUTE = m.Attribute(value=m.Name("self"))


class _Assigns(cst.CSTVisitor):
    def __init__(self):
        super().__init__()
        self.found: list[cst.Assign] = []

    def visit_Assign(self, node: cst.Assign) -> None:
        self.found.append(node)


def _used(expression: cst.BaseExpression) -> set[str]:
    names = {node.attr.value for node in findall(expression, _SELF_ATTRIBUTE)}
    names |= {node.value for node in findall(expression, m.Name())}
    return names - {"self"}
