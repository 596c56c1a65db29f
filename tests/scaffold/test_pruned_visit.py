"""pruned_visit returns the tree libcst's visit returns, without entering idle subtrees."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import pruned_visit

SOURCE = """
import torch  # a comment


class Block:
    def forward(self, x):
        y = self.wq(x) + 1
        return torch.relu(y)


def other(a, b=2):
    return [a * b for _ in range(3)]
"""


class _Rename(cst.CSTTransformer):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def leave_Name(self, original, updated):
        self.seen.append(original.value)
        return updated.with_changes(value="n") if updated.value == "y" else updated


class _Comments(cst.CSTTransformer):
    def leave_Comment(self, original, updated):
        return updated.with_changes(value="# changed")


class _Everything(cst.CSTTransformer):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_leave(self, original, updated):
        self.count += 1
        return super().on_leave(original, updated)


def test_the_same_tree_and_the_same_handler_calls_as_libcst():
    module = cst.parse_module(SOURCE)
    for make in (_Rename, _Comments):
        full, pruned = make(), make()
        assert pruned_visit.visit(module, pruned).code == module.visit(full).code
        assert getattr(pruned, "seen", None) == getattr(full, "seen", None)
    assert "n = self.wq" in pruned_visit.visit(module, _Rename()).code


def test_a_subtree_without_a_handled_type_keeps_its_identity():
    module = cst.parse_module(SOURCE)
    result = pruned_visit.visit(module, _Comments())
    assert result.body[1] is module.body[1]  # the class holds no comment
    assert module.visit(_Comments()).body[1] is not module.body[1]  # libcst rebuilds it


def test_a_visitor_of_generic_hooks_gets_every_node():
    module = cst.parse_module(SOURCE)
    full, pruned = _Everything(), _Everything()
    module.visit(full)
    pruned_visit.visit(module, pruned)
    assert pruned.count == full.count > 100
    assert pruned_visit.handled_types(_Everything) is None


def test_handled_types_reads_attribute_handlers_too():
    class _Body(cst.CSTVisitor):
        def visit_FunctionDef_body(self, node):
            pass

        def leave_Arg(self, node):
            pass

    assert pruned_visit.handled_types(_Body) == {"FunctionDef", "Arg"}


def test_an_index_shared_between_edits_stays_true():
    index = pruned_visit.TypeIndex()
    module = cst.parse_module(SOURCE)
    once = pruned_visit.visit(module, _Rename(), index)
    twice = pruned_visit.visit(once, _Comments(), index)
    assert twice.code == once.visit(_Comments()).code


def test_findall_finds_what_libcst_finds_in_its_order():
    import libcst.matchers as m

    from codegen.transforms.edits import findall

    module = cst.parse_module(SOURCE)
    for matcher in (
        m.Name(),
        m.Assign() | m.Return(),
        m.Call(func=m.Attribute(attr=m.Name("relu"))),
        m.MatchIfTrue(lambda node: isinstance(node, cst.Integer)),  # libcst's own route
    ):
        expected = m.findall(module, matcher)
        found = findall(module, matcher)
        assert len(found) == len(expected) > 0
        assert all(a is b for a, b in zip(found, expected, strict=True))
