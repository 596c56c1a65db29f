"""Refuse a package whose `from_hf_config` reads a config field the target's config lacks.

Why: `align_config_fields` leaves a read it cannot resolve as it was, and the package would
fail only when loaded (AttributeError), long after scaffold reported success. The check runs
on the finished `args.py`, so the line it names is the line that would have been written.
"""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider

from codegen.errors import CodegenError

_READ = m.Attribute(value=m.Name("hf_config"), attr=m.Name())


def _hasattr(field: str) -> m.Call:
    return m.Call(
        func=m.Name("hasattr"),
        args=[
            m.Arg(m.Name("hf_config")),
            m.Arg(m.SimpleString(f'"{field}"') | m.SimpleString(f"'{field}'")),
        ],
    )


class MissingConfigFields(CodegenError):
    """The package reads config fields the target's config class does not have."""

    def __init__(self, message: str, reads: list[tuple[str, int]]):
        super().__init__(message)
        self.reads = reads


def config_reads(module: cst.Module) -> list[tuple[str, int]]:
    """(field, line) of each plain `hf_config.<field>` read, in order. Not reads: a method
    call (`hf_config.to_dict()`), an assignment target, `getattr(hf_config, "<field>", d)`,
    and a read guarded by `hasattr(hf_config, "<field>")` (an `if`, a conditional
    expression or an `and`)."""
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    parents = wrapper.resolve(ParentNodeProvider)
    positions = wrapper.resolve(PositionProvider)
    found = []
    for node in m.findall(wrapper, _READ):
        field = node.attr.value
        if _called(node, parents) or _assigned(node, parents) or _guarded(node, field, parents):
            continue
        found.append((field, positions[node].start.line))
    return found


def check_config_reads(
    args_source: str, available: Iterable[str], *, target: str, config_class: str | None
) -> None:
    """Raise `MissingConfigFields` (one line) when `args_source` reads a field outside
    `available` (the config's fields, attribute_map names, properties, class attributes)."""
    available = {name.split(".", 1)[0] for name in available}
    missing = [
        (field, line)
        for field, line in config_reads(cst.parse_module(args_source))
        if field not in available
    ]
    if not missing:
        return
    owner = config_class or "its config class"
    lines: dict[str, list[str]] = {}  # a field read twice is named once, with both lines
    for field, line in missing:
        lines.setdefault(field, []).append(str(line))
    reads = ", ".join(f"hf_config.{f} (args.py:{', '.join(at)})" for f, at in lines.items())
    raise MissingConfigFields(
        f"{target}: from_hf_config would read {reads}, which {owner} does not have; add an"
        " alias in rules/names.py CONFIG_ALIASES or a derivation in CONFIG_DERIVATIONS;"
        " nothing written",
        missing,
    )


def _called(node: cst.Attribute, parents) -> bool:
    parent = parents.get(node)
    return isinstance(parent, cst.Call) and parent.func is node


def _assigned(node: cst.Attribute, parents) -> bool:
    parent = parents.get(node)
    return isinstance(parent, cst.AssignTarget | cst.AugAssign | cst.Del) and (
        getattr(parent, "target", None) is node
    )


def _guarded(node: cst.CSTNode, field: str, parents) -> bool:
    """Is `node` inside the true branch of a `hasattr(hf_config, "<field>")` test?"""
    guard = _hasattr(field)
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, cst.If | cst.IfExp) and child is parent.body:
            if m.findall(parent.test, guard):
                return True
        if (
            isinstance(parent, cst.BooleanOperation)
            and isinstance(parent.operator, cst.And)
            and child is parent.right
            and m.findall(parent.left, guard)
        ):
            return True
        child, parent = parent, parents.get(parent)
    return False
