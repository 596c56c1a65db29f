"""Refuse the settings of config switches the generated code does not branch on.

The HF source branches on config switches (`codegen analyze` lists them). A generated
package realises a switch by reading its field in `from_hf_config` and branching on it; a
switch whose field it never reads is baked in at the value the package was planned for, so
any other value would load and compute a different model. Those fields join FIXED_SETTINGS
with that value, and `from_hf_config` refuses other settings in one line.
"""

from __future__ import annotations

import json

import libcst as cst
import libcst.matchers as m

from codegen.analyze import walk
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, run


class GuardSwitches(Transform):
    """FIXED_SETTINGS gains `field: value` for each switch field `from_hf_config` never
    reads (`hf_config.<field>` or `getattr(hf_config, "<field>", ...)`), directly or
    through a field the config class derives from it (`derived`: use_sliding_window ->
    layer_types); fields it reads and fields already listed are left alone."""

    name = "guard_switches"

    def apply(self, package, features=None, *, settings: dict, derived=None) -> None:
        from codegen.scaffold.tidy import drop_unused_fields

        # a field the transforms left unused (mlp_bias once the biases are fixed) is read
        # now but dropped by tidy: it realises nothing
        drop_unused_fields(package)
        module = package.files["args.py"]
        reads = config_reads(module)
        listed = _listed(module)
        derived = derived or {}
        entries = [
            (json.dumps(field), _literal(value))
            for field, value in settings.items()
            if field not in reads
            and not reads & set(derived.get(field, ()))
            and field not in listed
        ]
        if entries:
            run(package, "args.py", EditDict("FIXED_SETTINGS", None, entries))


def _is_config(node: cst.CSTNode) -> bool:
    return isinstance(node, cst.Name) and node.value == "hf_config"


class _Reads(cst.CSTVisitor):
    """`hf_config.<field>` and `getattr(hf_config, "<field>", ...)` reads. A plain visitor
    with node checks: the decorated matcher visitor cost 0.1 s per args.py, run six times
    per scaffold."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if _is_config(node.value):
            self.names.add(node.attr.value)
        elif isinstance(node.value, cst.Attribute) and _is_config(node.value.value):
            # a sub-config's field: `hf_config.attn_config.clip_qkv`
            self.names.add(f"{node.value.attr.value}.{node.attr.value}")

    def visit_Call(self, node: cst.Call) -> None:
        if (
            isinstance(node.func, cst.Name)
            and node.func.value == "getattr"
            and len(node.args) >= 2
            and _is_config(node.args[0].value)
            and isinstance(node.args[1].value, cst.SimpleString)
        ):
            self.names.add(node.args[1].value.evaluated_value)


def config_reads(module: cst.Module) -> set[str]:
    """Config fields the module reads from `hf_config`, directly or through getattr; a
    sub-config's field as `attn_config.clip_qkv` (its sub-config `attn_config` too)."""
    visitor = _Reads()
    walk.visit(module, visitor)  # reads only: no rebuilt tree
    return visitor.names


def _listed(module: cst.Module) -> set[str]:
    found: set[str] = set()
    for node in m.findall(
        module,
        m.Assign(targets=[m.AssignTarget(m.Name("FIXED_SETTINGS"))], value=m.Dict()),
    ):
        for element in node.value.elements:
            if isinstance(element, cst.DictElement) and isinstance(element.key, cst.SimpleString):
                found.add(element.key.evaluated_value)
    return found


def _literal(value) -> str:
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    return json.dumps(value)
