"""Where a module's conditions are decided: tests of `if`/`elif`/`while`/`x if c else y`
whose truth never changes, and operands of `and`/`or` chains that never matter.

Shared by the rules (which report them) and the `fold_constant_branches` transform (which
removes them), so the check and the fix cannot disagree. An operand is considered where
its truth is all that counts: the first operand of a chain always, later ones only where the
chain itself is a condition or all its operands are bools (`x or None` as a value keeps its
`None`). `while True:` is an
idiom, not dead code: a `while` is reported only when it never runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from codegen.quality.evaluate import UNKNOWN, Lookup, _no_lookup, truth


@dataclass(frozen=True)
class Decision:
    node: cst.BaseExpression  # the decided test or operand
    owner: cst.CSTNode  # If / While / IfExp, or the BooleanOperation chain
    truth: bool

    @property
    def neutral(self) -> bool:
        """An operand that leaves the chain's outcome to the others (`True and x`)."""
        return isinstance(self.owner, cst.BooleanOperation) and self.truth == isinstance(
            self.owner.operator, cst.And
        )


def describe(decision: Decision, text: str) -> str:
    """A finding's message; `text` is the decided expression's source."""
    owner = decision.owner
    if isinstance(owner, cst.BooleanOperation):
        word = "and" if isinstance(owner.operator, cst.And) else "or"
        if decision.neutral:
            return f"`{text}` is always {decision.truth}: an operand `{word}` ignores"
        return f"`{text}` is always {decision.truth}: it decides its `{word}` alone"
    if isinstance(owner, cst.While):
        return f"`while {text}` never runs"
    dead = "the else branch" if decision.truth else "the branch"
    return f"`{text}` is always {decision.truth}: {dead} is dead"


def decisions(module_facts, lookup: Lookup = _no_lookup) -> list[Decision]:
    """The decided conditions of a module (`codegen.quality.facts.ModuleFacts`, whose scan
    listed its condition-bearing nodes in source order)."""
    finder = _Finder(lookup)
    for node in module_facts.conditionals:
        if node in finder.skipped:
            continue
        handler = getattr(finder, f"visit_{type(node).__name__}", None)
        if handler is not None:
            handler(node)
    return finder.found


CONDITIONALS = (cst.If, cst.IfExp, cst.While, cst.Assert, cst.UnaryOperation, cst.BooleanOperation)


class _Finder:
    def __init__(self, lookup: Lookup):
        self.lookup = lookup
        self.found: list[Decision] = []
        self.conditions: set[cst.CSTNode] = set()  # expressions used for their truth
        self.chained: set[cst.CSTNode] = set()  # inner links of a longer and/or chain
        self.skipped: set[cst.CSTNode] = set()  # inside a decided test: reported with it

    def _test(self, owner: cst.CSTNode, test: cst.BaseExpression, report=(True, False)):
        known = truth(test, self.lookup)
        if known is UNKNOWN:
            self.conditions.add(test)
            return
        self.skipped.update(_descendants(test))
        if known in report:
            self.found.append(Decision(test, owner, known))

    def visit_If(self, node):
        self._test(node, node.test)

    def visit_IfExp(self, node):
        self._test(node, node.test)

    def visit_While(self, node):
        self._test(node, node.test, report=(False,))

    def visit_Assert(self, node):
        self.conditions.add(node.test)

    def visit_UnaryOperation(self, node):
        if isinstance(node.operator, cst.Not):
            self.conditions.add(node.expression)

    def visit_BooleanOperation(self, node):
        if node in self.chained:
            return
        operands = _chain(node)
        for inner in operands[1]:
            self.chained.add(inner)
        as_condition = node in self.conditions or all(map(_boolean, operands[0]))
        if as_condition:
            self.conditions.update(operands[0])
        for position, operand in enumerate(operands[0]):
            if position and not as_condition:
                break
            known = truth(operand, self.lookup)
            if known is not UNKNOWN:
                self.found.append(Decision(operand, _owner(node, operand), known))


def _boolean(node: cst.BaseExpression) -> bool:
    """Whether `node` always evaluates to a bool (then a chain of such is its own truth)."""
    if isinstance(node, cst.Comparison):
        return True
    if isinstance(node, cst.UnaryOperation):
        return isinstance(node.operator, cst.Not)
    if isinstance(node, cst.Name):
        return node.value in ("True", "False")
    if isinstance(node, cst.BooleanOperation):
        return _boolean(node.left) and _boolean(node.right)
    return isinstance(node, cst.Call) and m.matches(
        node.func, m.Name("bool") | m.Name("isinstance")
    )


def _chain(node: cst.BooleanOperation) -> tuple[list, list]:
    """The operands of `a and b and c` (parsed `(a and b) and c`), and its inner links."""
    operands: list = []
    links: list = []
    kind = type(node.operator)
    current: cst.BaseExpression = node
    rights = []
    while (
        isinstance(current, cst.BooleanOperation)
        and isinstance(current.operator, kind)
        and (current is node or not current.lpar)
    ):
        if current is not node:
            links.append(current)
        rights.append(current.right)
        current = current.left
    operands.append(current)
    operands.extend(reversed(rights))
    return operands, links


def _owner(chain: cst.BooleanOperation, operand: cst.BaseExpression) -> cst.BooleanOperation:
    """The link whose left or right the operand is (what a fix rewrites)."""
    current = chain
    while current.left is not operand and current.right is not operand:
        current = current.left
    return current


def _descendants(node: cst.CSTNode):
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children)
