"""DC4: a function or class of model.py or args.py that nothing in the package uses."""

from __future__ import annotations

import libcst as cst

from codegen.analyze import walk
from codegen.quality.rule import Finding, Rule

# the files transforms edit; the shared layers written into a package are a library
FILES = ("model.py", "args.py")
ENTRY_POINTS = frozenset({"Model", "ModelArgs"})  # what the registry and users import


class _Used(cst.CSTVisitor):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_Name(self, node):
        self.names.add(node.value)

    def visit_Attribute(self, node):
        self.names.add(node.attr.value)

    def visit_SimpleString(self, node):  # `__all__` entries, getattr(module, "name")
        value = node.evaluated_value
        if isinstance(value, str) and value.isidentifier():
            self.names.add(value)


def unused_definitions(modules: dict[str, cst.Module]) -> dict[str, list[cst.CSTNode]]:
    """{filename: its module-level functions and classes no code of the package names}.
    A definition naming itself (recursion) does not count as a use of it."""
    uses: list[tuple[cst.CSTNode | None, set[str]]] = []  # (definition or None, names)
    for module in modules.values():
        for statement in module.body:
            visitor = _Used()
            walk.visit(statement, visitor)  # reads only: no rebuilt tree
            own = isinstance(statement, (cst.FunctionDef, cst.ClassDef))
            uses.append((statement if own else None, visitor.names))
    found = {}
    for filename in FILES:
        module = modules.get(filename)
        if module is None:
            continue
        dead = []
        for statement in module.body:
            if not isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
                continue
            name = statement.name.value
            if name.startswith("__") or name in ENTRY_POINTS:
                continue
            if not any(name in names for owner, names in uses if owner is not statement):
                dead.append(statement)
        if dead:
            found[filename] = dead
    return found


class UnusedDefinition(Rule):
    """A function or class model.py or args.py defines that no code of the package uses.

    Left behind when a branch that called it was folded away (a window mask after
    `sliding_window` is pinned to None). Names in code, attributes and identifier strings
    (`__all__`, `getattr`) anywhere in the package count as uses; the shared layers written
    into a package are a library and are not checked.
    """

    code = "DC4"
    VALID = [
        "def mask(n):\n    return n\n\n\nclass M:\n    def f(self, n):\n"
        "        return mask(n)\n\n\nMODEL = M\n",
        {"model.py": "def helper():\n    return 1\n", "spec.py": "from .model import helper\n"},
        '__all__ = ["helper"]\n\n\ndef helper():\n    return 1\n',
    ]
    INVALID = [
        "def mask(n):\n    return n\n\n\nclass M:\n    def f(self, n):\n        return n\n",
        # naming itself is no use
        "def walk(n):\n    return walk(n - 1) if n else 0\n",
    ]

    def check(self, facts):
        modules = {name: module_facts.module for name, module_facts in facts.files.items()}
        for filename, dead in unused_definitions(modules).items():
            module_facts = facts.files[filename]
            for statement in dead:
                kind = "class" if isinstance(statement, cst.ClassDef) else "function"
                yield Finding(
                    filename,
                    module_facts.line(statement),
                    self.code,
                    f"{kind} {statement.name.value} is used nowhere in the package",
                )
