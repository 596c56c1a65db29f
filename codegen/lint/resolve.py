"""Map registry values to files and read `ModelSpec(...)` fields, statically.

Why: "the entry resolves" must be checked without importing the model (which would pull
torch): a module path becomes a file path, and "defines SPEC" becomes a look at the
module's top-level bindings.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

from codegen.lint.read import Parsed, dotted


def module_file(roots: Sequence[Path], module: str) -> Path | None:
    """`pkg/mod.py` or `pkg/mod/__init__.py` for `pkg.mod` under the first root that has it."""
    parts = module.split(".")
    for root in roots:
        base = root.joinpath(*parts)
        for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def spec_attr(parsed: Parsed) -> str | None:
    """The name a module binds to a `ModelSpec(...)` call (`SPEC` by convention)."""
    for stmt in parsed.tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and _is_spec_call(stmt.value):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    return target.id
    return None


def spec_fields(parsed: Parsed, attr: str) -> dict[str, ast.expr] | None:
    """The keyword arguments of `ATTR = ModelSpec(...)`, or None if it is not spelled so."""
    for stmt in parsed.tree.body:
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)) or not _is_spec_call(stmt.value):
            continue
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        if any(isinstance(t, ast.Name) and t.id == attr for t in targets):
            return {k.arg: k.value for k in stmt.value.keywords if k.arg}  # type: ignore[union-attr]
    return None


def _is_spec_call(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and (dotted(value.func) or "").endswith("ModelSpec")


def string_members(node: ast.expr) -> list[tuple[str, int]] | None:
    """Strings of `frozenset({...})`, a set, tuple or list literal, with their lines."""
    if isinstance(node, ast.Call) and dotted(node.func) in ("frozenset", "set") and node.args:
        node = node.args[0]
    if not isinstance(node, (ast.Set, ast.Tuple, ast.List)):
        return None
    found = []
    for item in node.elts:
        if not (isinstance(item, ast.Constant) and isinstance(item.value, str)):
            return None
        found.append((item.value, item.lineno))
    return found
