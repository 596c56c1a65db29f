"""Drop `self.x = <pinned value>` where nothing reads `x` any more.

After `fold_constant_branches` removed `if self.norm_topk_prob:`, the line
`self.norm_topk_prob = args.norm_topk_prob` in `__init__` is all that still reads the
ModelArgs field, which keeps a dead option alive. An attribute is dropped only when its
value is one every accepted config pins (so computing it has no effect and no cost) and no
code of the package, nor the shared layers written into it, loads an attribute of that
name; module attributes holding weights are calls and are never candidates.
"""

from __future__ import annotations

import ast
import functools

import libcst as cst

from codegen.quality.evaluate import UNKNOWN, value
from codegen.quality.facts import package_facts
from codegen.transforms.base import Transform


class DropPinnedAttributes(Transform):
    """Remove `self.x = v` lines whose v is pinned and whose x nothing reads."""

    name = "drop_pinned_attributes"

    def apply(self, package, features=None) -> None:
        facts = package_facts(package.files)
        loaded = _shared_loads()
        for module_facts in facts.files.values():
            for node in module_facts.loads():
                label = module_facts.reads.get(node, (None, ""))[1]
                if not label.startswith("ModelArgs."):  # a pinned field's read is not one of x
                    loaded.add(node.attr.value)
        for filename, module in list(package.files.items()):
            lookup = facts.lookup(filename)
            dead = {
                store.assign
                for store in facts.files[filename].self_stores
                if store.assign is not None
                and store.attr not in loaded
                and value(store.assign.value, lookup) is not UNKNOWN
            }
            if dead:
                package.files[filename] = package.visit(module, _Remove(dead))


class _Remove(cst.CSTTransformer):
    def __init__(self, assigns):
        super().__init__()
        self.assigns = assigns

    def leave_SimpleStatementLine(self, original, updated):
        return cst.RemoveFromParent() if original.body[0] in self.assigns else updated


def _shared_loads() -> set[str]:
    """Attribute names the shared modules scaffold writes into a package read."""
    return set(_shared_names())


@functools.cache
def _shared_names() -> frozenset[str]:
    # read-only and outside the package: the stdlib parser is enough, and ten times faster
    from codegen.scaffold.standalone import VENDORED, _source

    return frozenset(
        node.attr
        for module in VENDORED
        for node in ast.walk(ast.parse(_source(module)))
        if isinstance(node, ast.Attribute)
    )
