"""Carry the shard plan through scaffold: the rules' entries in, removed modules' entries out."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError

_FILE = "parallelize.py"


class SyncShardPlan(Transform):
    """parallelize.py's `PLAN` gets the entries the applied rules add (`adds`: pattern ->
    style, from `rules/sharding.py`) and loses every entry naming a module or parameter that
    model.py no longer builds (a path segment no `self.<name> = ...` assigns); `optional`
    patterns join `OPTIONAL`. A package without parallelize.py is left alone.
    """

    name = "sync_shard_plan"

    def apply(self, package, features=None, *, adds=None, optional=()) -> None:
        if _FILE not in package.files:
            return
        built = _assigned_attributes(package.module("model.py"))
        editor = _PlanEditor(dict(adds or {}), set(optional), built)
        package.edit(_FILE, editor)
        if not editor.found:
            raise EditError(f"{_FILE} has no PLAN dict literal")


def _assigned_attributes(module: cst.Module) -> set[str]:
    """Every name assigned as `self.<name> = ...` anywhere in the module."""
    target = m.Attribute(value=m.Name("self"), attr=m.Name())
    names = set()
    for node in m.findall(module, m.Assign() | m.AnnAssign()):
        targets = (
            [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
        )
        names |= {t.attr.value for t in targets if m.matches(t, target)}
    return names


def _string(node) -> str | None:
    return node.evaluated_value if isinstance(node, cst.SimpleString) else None


class _PlanEditor(cst.CSTTransformer):
    def __init__(self, adds: dict[str, str], optional: set[str], built: set[str]):
        super().__init__()
        self.adds, self.optional, self.built = adds, optional, built
        self.found = False

    def _live(self, pattern: str) -> bool:
        return all(part == "*" or part in self.built for part in pattern.split("."))

    def leave_Assign(self, original, updated):
        name = updated.targets[0].target
        if m.matches(name, m.Name("PLAN")) and isinstance(updated.value, cst.Dict):
            self.found = True
            return updated.with_changes(value=self._plan(updated.value))
        return updated

    def leave_SimpleStatementLine(self, original, updated):
        statement = updated.body[0]
        if isinstance(statement, cst.Assign | cst.AnnAssign):
            target = statement.targets[0].target if isinstance(statement, cst.Assign) else None
            target = target or statement.target
            if m.matches(target, m.Name("OPTIONAL")):
                value = self._optional(statement.value)
                return updated.with_changes(body=[statement.with_changes(value=value)])
        return updated

    def _plan(self, plan: cst.Dict) -> cst.Dict:
        elements = []
        for element in plan.elements:
            key = _string(element.key) if isinstance(element, cst.DictElement) else None
            if key is None or not self._live(key):
                continue
            if key in self.adds:
                element = element.with_changes(value=cst.SimpleString(repr(self.adds.pop(key))))
            elements.append(element.with_changes(comma=cst.Comma()))
        for key, style in self.adds.items():
            elements.append(
                cst.DictElement(
                    cst.SimpleString(repr(key)), cst.SimpleString(repr(style)), comma=cst.Comma()
                )
            )
        self.kept = {_string(e.key) for e in elements}
        return plan.with_changes(elements=elements)

    def _optional(self, old: cst.BaseExpression) -> cst.BaseExpression:
        """The old OPTIONAL's strings plus the rules', those still in PLAN."""
        names = {_string(node) for node in m.findall(old, m.SimpleString())} | self.optional
        names = sorted(names & getattr(self, "kept", set()))
        return cst.parse_expression(
            "frozenset({" + ", ".join(repr(n) for n in names) + "})" if names else "frozenset()"
        )
