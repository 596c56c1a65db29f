"""Rewrite the package's FIXED_SETTINGS table to the settings the generated code hard-codes."""

from __future__ import annotations

import json

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, run


class SetFixedSettings(Transform):
    """FIXED_SETTINGS becomes `settings` (config field -> the one value the code implements),
    so a checkpoint configured otherwise is refused instead of silently mis-loaded."""

    name = "set_fixed_settings"

    def apply(self, package, features=None, *, settings: dict) -> None:
        entries = [(json.dumps(key), _literal(value)) for key, value in settings.items()]
        run(package, "args.py", EditDict("FIXED_SETTINGS", lambda key, value: [], entries))


def _literal(value) -> str:
    return (
        repr(value) if isinstance(value, (bool, int, float)) or value is None else json.dumps(value)
    )
