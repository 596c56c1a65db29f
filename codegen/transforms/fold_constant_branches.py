"""Fold the conditions that no accepted config can change, keeping the live branch only.

A reference carries options its target does not have: a generated mixtral package keeps
qwen3_moe's `mlp_only_layers` and `decoder_sparse_step`, which `from_hf_config` pins to
`()` and `1` because Mixtral's config has neither, and transforms leave literal tests
behind (`x if (None) else y`). Wherever the dead-code check (`codegen.quality`, rules DC1
and DC2) finds a decided condition this transform removes it: an `if`/`elif` chain keeps
the branch that always runs (its body dedented in place), `x if c else y` becomes the live
side, `while` loops that never run go, and `and`/`or` operands that never matter are
dropped. It repeats until nothing is decided, since one fold can pin an attribute another
condition reads. The fields and imports this leaves unread go in tidy's later steps.
"""

from __future__ import annotations

import libcst as cst

from codegen.quality.conditions import Decision, decisions
from codegen.quality.facts import package_facts
from codegen.transforms.base import Transform

_MAX_ROUNDS = 8


class FoldConstantBranches(Transform):
    """Remove branches no accepted config reaches (conditions on pinned fields or literals)."""

    name = "fold_constant_branches"

    def apply(self, package, features=None) -> None:
        for _ in range(_MAX_ROUNDS):
            facts = package_facts(package.files)
            changed = False
            for filename, module in list(package.files.items()):
                found = decisions(facts.files[filename], facts.lookup(filename))
                if found:
                    package.files[filename] = package.visit(module, _Fold(found))
                    changed = True
            if not changed:
                return


class _Fold(cst.CSTTransformer):
    def __init__(self, found: list[Decision]):
        super().__init__()
        self.tests = {d.node: d.truth for d in found if not _in_chain(d)}
        self.neutral = {d.node for d in found if _in_chain(d) and d.neutral}
        self.deciding = {d.node for d in found if _in_chain(d) and not d.neutral}
        self.elifs: set[cst.If] = set()

    def visit_If(self, node):
        if isinstance(node.orelse, cst.If):
            self.elifs.add(node.orelse)

    def leave_If(self, original, updated):
        if original in self.elifs:
            return updated  # the chain is rebuilt from its first `if`
        branches, else_block = [], None
        old, new = original, updated
        while True:
            branches.append((old, new))
            if not isinstance(old.orelse, cst.If):
                else_block = new.orelse
                break
            old, new = old.orelse, new.orelse
        kept = []
        for old, new in branches:
            known = self.tests.get(old.test)
            if known is None:
                kept.append(new)
            elif known:
                else_block = cst.Else(body=new.body)
                break
        if len(kept) == len(branches):
            return updated
        if kept:
            chain = else_block
            for branch in reversed(kept):
                chain = branch.with_changes(orelse=chain)
            return chain.with_changes(leading_lines=updated.leading_lines)
        if else_block is None:
            return cst.RemoveFromParent()
        return _inline(else_block.body, updated.leading_lines)

    def leave_While(self, original, updated):
        if self.tests.get(original.test) is not False:
            return updated
        if updated.orelse is None:
            return cst.RemoveFromParent()
        return _inline(updated.orelse.body, updated.leading_lines)

    def leave_IfExp(self, original, updated):
        known = self.tests.get(original.test)
        if known is None:
            return updated
        return _keep_parens(original, updated.body if known else updated.orelse)

    def leave_BooleanOperation(self, original, updated):
        if original.left in self.neutral:
            return _keep_parens(original, updated.right)
        if original.right in self.neutral:
            return _keep_parens(original, updated.left)
        if original.left in self.deciding:
            return _keep_parens(original, updated.left)
        if original.right in self.deciding:
            return _keep_parens(original, updated.right)
        return updated

    def leave_IndentedBlock(self, original, updated):
        if updated.body:
            return updated
        return updated.with_changes(body=[cst.SimpleStatementLine([cst.Pass()])])


def _in_chain(decision: Decision) -> bool:
    return isinstance(decision.owner, cst.BooleanOperation)


def _inline(block: cst.BaseSuite, leading_lines) -> cst.FlattenSentinel:
    """A block's statements in place of the statement that held it."""
    if isinstance(block, cst.SimpleStatementSuite):
        statements = [cst.SimpleStatementLine(body=block.body)]
    else:
        statements = list(block.body)
    first = statements[0]
    statements[0] = first.with_changes(leading_lines=[*leading_lines, *first.leading_lines])
    return cst.FlattenSentinel(statements)


def _keep_parens(original: cst.BaseExpression, replacement: cst.BaseExpression):
    """The replacement in the original's parentheses (it binds at least as tightly, so
    parentheses are needed only where the original had them)."""
    if original.lpar and not replacement.lpar:
        return replacement.with_changes(lpar=original.lpar, rpar=original.rpar)
    return replacement
