"""Framework targets: where each framework keeps its model registries, as data.

`TARGETS` maps a target name to its `Target`; `codegen register --target NAME` applies its
registries in order and `codegen lint` checks them. To add a framework, write a module
like `vllm.py` (a `TARGET = Target(...)`) and list it here.
"""

from __future__ import annotations

from codegen.errors import CodegenError
from codegen.targets import archon, atom, house, nemo, transformers, vllm
from codegen.targets.model import Registry, Target

TARGETS: dict[str, Target] = {
    module.TARGET.name: module.TARGET for module in (house, archon, nemo, atom, vllm, transformers)
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        known = ", ".join(sorted(TARGETS))
        raise CodegenError(f"unknown target {name!r} (known: {known})") from None


__all__ = ["TARGETS", "Registry", "Target", "get_target"]
