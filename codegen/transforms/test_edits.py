"""Structural anchors: they match the syntax tree, not the rendered text."""

import libcst as cst

from codegen.transforms.edits import (
    assigns,
    calls,
    calls_super_init,
    is_statement,
    returns,
    sets,
    uses,
)


def _statement(code: str) -> cst.BaseStatement:
    return cst.parse_module(code.strip() + "\n").body[0]


def test_assigns_names_the_target_exactly():
    anchor = assigns("self.wq")
    assert anchor(_statement("self.wq = nn.Linear(dim, dim)"))
    assert anchor(_statement("self.wq: nn.Linear = nn.Linear(dim, dim)"))
    assert anchor(_statement("self.wq=nn.Linear(\n    dim,\n    dim,\n)"))  # layout aside
    assert not anchor(_statement("self.wqkv = nn.Linear(dim, dim)"))  # a text prefix would match
    assert not anchor(_statement("q = self.wq(x)"))


def test_assigns_with_calling_looks_through_chained_calls():
    anchor = assigns("probs", calling="torch.softmax")
    assert anchor(_statement("probs = torch.softmax(scores, dim=-1).to(q.dtype)"))
    assert not anchor(_statement("probs = F.softmax(scores, dim=-1)"))


def test_sets_finds_an_assignment_inside_a_branch():
    branch = _statement("if moe:\n    self.moe = MoE(args)\nelse:\n    self.feed_forward = F()")
    assert sets("self.feed_forward")(branch)
    assert not assigns("self.feed_forward")(branch)


def test_returns_calls_and_uses():
    assert returns("weights")(_statement("return weights.to(logits.dtype), indices"))
    assert not returns("weights")(_statement("weights = weights * 2"))
    assert calls("self.w1")(_statement("out = self.w2(F.silu(self.w1(x)) * self.w3(x))"))
    assert not calls("self.w1")(_statement("self.w1 = nn.Linear(dim, hidden)"))
    assert uses("normed")(_statement("h = x + self.attention(normed, rope)"))
    assert not uses("normed")(_statement("h = x + self.attention(unnormed, rope)"))


def test_is_statement_compares_syntax_trees():
    anchor = is_statement("weights = weights / weights.sum(dim=-1, keepdim=True)")
    assert anchor(_statement("weights = weights / weights.sum(dim=-1,keepdim=True)  # renorm"))
    assert not anchor(_statement("weights = weights / weights.sum(dim=-1)"))


def test_calls_super_init():
    assert calls_super_init(_statement("super().__init__()"))
    assert calls_super_init(_statement("super().__init__(config)"))
    assert not calls_super_init(_statement("self.init()"))
