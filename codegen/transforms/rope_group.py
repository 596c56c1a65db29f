"""Read the rope parameters from the `rope_parameters` group the attention layers pick."""

from __future__ import annotations

import json

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import dotted, run

_READ = dotted("hf_config.rope_parameters")


class RopeGroup(Transform):
    """`hf_config.rope_parameters` -> `hf_config.rope_parameters[group]` wherever args.py
    reads it: the config groups its rope parameters under labels that are not layer types
    (DeepSeek-V4's "main" and "compress", `{label: {"rope_theta": ...}}`) and every attention
    layer's tables are built from the group `group` (read from the attention's pick, see
    `rope.group`), so the flat dict is no rope to build and another group is another model.
    """

    name = "rope_group"

    def apply(self, package, features=None, *, group: str) -> None:
        run(package, "args.py", _PickGroup(group))


class _PickGroup(cst.CSTTransformer):
    def __init__(self, group: str):
        super().__init__()
        self.group = group
        self.hits = 0
        self._picked = 0  # inside a subscript of the read already (a second run)

    def visit_Subscript(self, node):
        if m.matches(node.value, _READ):
            self._picked += 1

    def leave_Subscript(self, original, updated):
        if m.matches(original.value, _READ):
            self._picked -= 1
        return updated

    def leave_Attribute(self, original, updated):
        if not m.matches(original, _READ) or self._picked:
            return updated
        self.hits += 1
        index = cst.SubscriptElement(cst.Index(cst.SimpleString(json.dumps(self.group))))
        return cst.Subscript(value=updated, slice=[index])
