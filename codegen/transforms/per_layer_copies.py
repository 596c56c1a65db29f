"""Refuse a per-layer list of a size the package builds every layer with once.

A config class may derive a per-layer list from one size when the list is left unset
(laguna: `num_attention_heads_per_layer = [num_attention_heads] * num_hidden_layers`), and
the model then reads the list. A package that builds every layer from the one size (it
reads `num_attention_heads`, never the list) computes another model for a list whose entries
differ, so `from_hf_config` refuses such a list in one line; a list repeating the size, or a
config class without the list, passes.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, calls, run
from codegen.transforms.guard_switches import config_reads

_SELF = m.Attribute(value=m.Name("self"))
# `self.F = [self.G] * <anything>` (or `[G] * ...` with G a parameter of the same name)
_REPEATED = m.Assign(
    targets=[m.AssignTarget(_SELF)],
    value=m.BinaryOperation(
        left=m.List(elements=[m.Element(_SELF | m.Name())]), operator=m.Multiply()
    ),
)

GUARD = """
if any(n != hf_config.{size} for n in getattr(hf_config, "{field}", None) or ()):
    raise NotImplementedError(
        f"{field}={{hf_config.{field}}}: "
        "only {size} on every layer is supported"
    )
"""


class GuardPerLayerCopies(Transform):
    """`from_hf_config` refuses a per-layer list (`copies`: list field -> the size field the
    config class repeats into it) whose entries differ from the size, for each list the
    package does not read while it reads the size. `copies` defaults to what the target's
    configuration source derives that way."""

    name = "guard_per_layer_copies"

    def apply(self, package, features=None, *, copies: dict[str, str] | None = None) -> None:
        if copies is None:
            copies = detect(features)
        reads = config_reads(package.files["args.py"])
        guards = [
            GUARD.format(field=field, size=size)
            for field, size in sorted(copies.items())
            if field not in reads and size in reads
        ]
        if guards:
            code = "".join(guards)
            anchor = calls("require_settings")
            run(package, "args.py", InsertStatements("ModelArgs", "from_hf_config", anchor, code))


def detect(features) -> dict[str, str]:
    """list field -> size field, for each `self.F = [self.G] * ...` of the configuration
    source the features name (none without one)."""
    path = getattr(getattr(features, "source", None), "configuration", None) if features else None
    if not path or not Path(path).is_file():
        return {}
    return copies_in(Path(path).read_text())


def copies_in(source: str) -> dict[str, str]:
    found = {}
    for node in m.findall(cst.parse_module(source), _REPEATED):
        field = node.targets[0].target.attr.value
        item = node.value.left.elements[0].value
        size = item.attr.value if isinstance(item, cst.Attribute) else item.value
        if size != field:
            found[field] = size
    return found
