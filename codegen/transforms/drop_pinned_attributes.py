"""Drop `self.x = <pinned value>` where nothing reads `x` any more.

After `fold_constant_branches` removed `if self.norm_topk_prob:`, the line
`self.norm_topk_prob = args.norm_topk_prob` in `__init__` is all that still reads the
ModelArgs field, which keeps a dead option alive. An attribute is dropped only when its
value is one every accepted config pins (so computing it has no effect and no cost) and no
code of the package, nor the shared layers written into it, loads an attribute of that
name; module attributes holding weights are calls and are never candidates.
"""

from __future__ import annotations

import functools

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ExpressionContext

from codegen.quality.evaluate import UNKNOWN, value
from codegen.quality.facts import package_facts
from codegen.transforms.base import Transform

_SELF_STORE = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget(target=m.Attribute(value=m.Name("self")))])]
)


class DropPinnedAttributes(Transform):
    """Remove `self.x = v` lines whose v is pinned and whose x nothing reads."""

    name = "drop_pinned_attributes"

    def apply(self, package, features=None) -> None:
        facts = package_facts(package.files)
        loaded = _shared_loads()
        for module_facts in facts.files.values():
            for node, context in module_facts.contexts.items():
                if (
                    isinstance(node, cst.Attribute)
                    and context is ExpressionContext.LOAD
                    and not module_facts.reads.get(node, (None, ""))[1].startswith("ModelArgs.")
                ):
                    loaded.add(node.attr.value)  # a pinned field's read is not one of `x`
        for filename, module in list(package.files.items()):
            lookup = facts.lookup(filename)
            dead = {
                line
                for line in m.findall(module, _SELF_STORE)
                if line.body[0].targets[0].target.attr.value not in loaded
                and value(line.body[0].value, lookup) is not UNKNOWN
            }
            if dead:
                package.files[filename] = module.visit(_Remove(dead))


class _Remove(cst.CSTTransformer):
    def __init__(self, lines):
        super().__init__()
        self.lines = lines

    def leave_SimpleStatementLine(self, original, updated):
        return cst.RemoveFromParent() if original in self.lines else updated


def _shared_loads() -> set[str]:
    """Attribute names the shared modules scaffold writes into a package read."""
    return set(_shared_names())


@functools.cache
def _shared_names() -> frozenset[str]:
    from codegen.scaffold.standalone import VENDORED, _source

    names: set[str] = set()
    for module in VENDORED:
        for node in m.findall(cst.parse_module(_source(module)), m.Attribute()):
            names.add(node.attr.value)
    return frozenset(names)
