"""Helpers for the before/after tests beside each transform."""

from __future__ import annotations

import libcst as cst

from codegen.scaffold.source import SourcePackage


def package_of(files: dict[str, str], name: str = "llama") -> SourcePackage:
    """A SourcePackage holding exactly these (dedented-as-given) sources."""
    return SourcePackage(
        name, {filename: cst.parse_module(text) for filename, text in files.items()}
    )
