"""Load the rule table from `rules/` (a checkout) or `codegen/rules` (a wheel)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def rules_dir() -> Path:
    for candidate in (_PACKAGE_ROOT.parent / "rules", _PACKAGE_ROOT / "rules"):
        if (candidate / "__init__.py").is_file():
            return candidate
    raise FileNotFoundError("cannot find the rules package")


def _rules_package():
    if "codegen.rules" not in sys.modules:
        directory = rules_dir()
        spec = importlib.util.spec_from_file_location(
            "codegen.rules", directory / "__init__.py", submodule_search_locations=[str(directory)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["codegen.rules"] = module
        spec.loader.exec_module(module)
    return importlib.import_module("codegen.rules")


def load_names():
    """The naming tables (`rules/names.py`)."""
    _rules_package()
    return importlib.import_module("codegen.rules.names")


def load_sharding():
    """How the modules rules add are sharded (`rules/sharding.py`)."""
    _rules_package()
    return importlib.import_module("codegen.rules.sharding")


def load_rules():
    """Every Rule row, in table order. Imported as `codegen.rules` wherever it lives."""
    return _rules_package().all_rules()
