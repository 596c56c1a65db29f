"""QkNormAfterRope: before/after on the qwen3 reference and on llama with QK-norm added."""

import ast

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.qk_norm import SetQkNorm
from codegen.transforms.qk_norm_after_rope import QkNormAfterRope


def _forward(model: str) -> list[str]:
    """Attention.forward's statements, as source lines."""
    tree = ast.parse(model)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Attention")
    forward = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    return [ast.unparse(s) for s in forward.body]


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def test_qwen3s_norms_move_behind_the_rotation():
    before = _forward(_package("qwen3").render()["model.py"])
    assert "q = self.q_norm(self.wq(x).view(batch, seq, -1, self.head_dim)).transpose(1, 2)" in (
        before
    )
    package = _package("qwen3")
    QkNormAfterRope().apply(package)
    files = package.render()
    body = _forward(files["model.py"])
    assert "q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)" in body
    assert "k = self.wk(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)" in body
    rotate = body.index("q, k = (apply_rotary(q, cos, sin), apply_rotary(k, cos, sin))")
    assert body[rotate + 1] == "q, k = (self.q_norm(q), self.k_norm(k))"
    assert files["model.py"].count("self.q_norm(") == 1
    # the norm modules and their checkpoint rows stay
    assert "self.q_norm = RMSNorm(args.head_dim, args.norm_eps)" in files["model.py"]
    assert "attention.q_norm.weight" in files["state_dict_adapter.py"]


def test_after_set_qk_norm_on_llama():
    package = _package("llama")
    SetQkNorm().apply(package, kind="per_head")
    QkNormAfterRope().apply(package)
    body = _forward(package.render()["model.py"])
    assert body[-3] == "q, k = (self.q_norm(q), self.k_norm(k))"


def test_a_package_without_qk_norm_is_an_error():
    with pytest.raises(EditError):
        QkNormAfterRope().apply(_package("llama"))
