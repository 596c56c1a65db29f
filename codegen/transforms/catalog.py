"""Every Transform in this package, by name (discovered, so adding a file registers it)."""

from __future__ import annotations

import importlib
import pkgutil

from codegen.transforms.base import Transform

_SKIP = {"base", "catalog", "edits", "snippets", "testing"}


def _discover() -> dict[str, type[Transform]]:
    package = importlib.import_module("codegen.transforms")
    found: dict[str, type[Transform]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _SKIP or info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"codegen.transforms.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Transform)
                and value is not Transform
                and value.__module__ == module.__name__
            ):
                if value.name in found:
                    raise RuntimeError(f"two transforms named {value.name!r}")
                found[value.name] = value
    return found


TRANSFORMS = _discover()
