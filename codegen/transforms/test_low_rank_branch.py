"""LowRankBranch: before/after on the llama reference; the branch runs on the attention's
normed input and joins the attention's residual sum, divided by sqrt(2)."""

from __future__ import annotations

import ast

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.low_rank_branch import LowRankBranch

BRANCH = {
    "module": "laurel",
    "down": "linear_left",
    "up": "linear_right",
    "norm": "post_laurel_norm",
    "rank": 64,
    "rank_field": "laurel_rank",
    "divisor": 2**0.5,
}


def _files(branch=BRANCH) -> dict[str, str]:
    package = SourcePackage.from_directory(references_dir() / "llama")
    LowRankBranch().apply(package, branch=branch)
    return package.render()


def _method(code: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(code)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_the_branch_joins_the_attentions_residual_sum_scaled():
    before = SourcePackage.from_directory(references_dir() / "llama").render()["model.py"]
    assert _method(before, "TransformerBlock", "forward") == [
        "h = x + self.attention(self.attention_norm(x), rope)",
        "return h + self.feed_forward(self.ffn_norm(h))",
    ]
    files = _files()
    assert _method(files["model.py"], "TransformerBlock", "forward") == [
        "attention_input = self.attention_norm(x)",
        "h = x + self.attention(attention_input, rope)",
        "h = (h + self.branch(attention_input)) / sqrt(2)",
        "return h + self.feed_forward(self.ffn_norm(h))",
    ]
    init = _method(files["model.py"], "TransformerBlock", "__init__")
    assert (
        "self.branch = LowRankBranch(args.dim, args.branch_rank, RMSNorm(args.dim, args.norm_eps))"
        in init
    )
    assert _method(files["model.py"], "LowRankBranch", "forward") == [
        "return x + self.norm(self.up(self.down(x)))"
    ]
    assert "from math import sqrt" in files["model.py"]
    assert "branch_rank=hf_config.laurel_rank" in files["args.py"]
    adapter = files["state_dict_adapter.py"]
    parts = (("linear_left", "down"), ("linear_right", "up"), ("post_laurel_norm", "norm"))
    for hf, house in parts:
        row = f'"model.layers.{{}}.laurel.{hf}.weight": "layers.{{}}.branch.{house}.weight"'
        assert row in adapter


def test_an_unscaled_sum_adds_the_branch_alone():
    files = _files({**BRANCH, "divisor": None})
    forward = _method(files["model.py"], "TransformerBlock", "forward")
    assert "h = h + self.branch(attention_input)" in forward


def test_a_branch_without_its_parts_fails_loudly():
    with pytest.raises(EditError, match="parts and rank"):
        _files({"module": "laurel"})
