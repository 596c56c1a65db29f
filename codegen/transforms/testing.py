"""Helpers for the before/after tests beside each transform."""

from __future__ import annotations

import libcst as cst

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage


def package_of(files: dict[str, str], name: str = "llama") -> SourcePackage:
    """A SourcePackage holding exactly these (dedented-as-given) sources."""
    return SourcePackage(
        name, {filename: cst.parse_module(text) for filename, text in files.items()}
    )


def reference_with_adapter(adapter: str, reference: str = "llama") -> SourcePackage:
    """The reference's model.py and args.py beside `adapter` as its state_dict_adapter.py (a
    table without the row a transform rewrites, say)."""
    files = SourcePackage.from_directory(references_dir() / reference).render()
    return package_of(
        {
            "model.py": files["model.py"],
            "args.py": files["args.py"],
            "state_dict_adapter.py": adapter,
        }
    )
