"""FfnOutputGain: before/after on the qwen3 reference."""

from __future__ import annotations

import ast

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.ffn_output_gain import FfnOutputGain


def _class(code: str, name: str) -> ast.ClassDef:
    return next(n for n in ast.parse(code).body if isinstance(n, ast.ClassDef) and n.name == name)


def _method(cls: ast.ClassDef, name: str) -> list[str]:
    method = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_the_mlp_returns_its_output_times_a_gain_starting_at_one():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    before = _class(package.render()["model.py"], "FeedForward")
    assert _method(before, "forward") == ["return self.w2(F.silu(self.w1(x)) * self.w3(x))"]
    FfnOutputGain().apply(package, gain="global_scale")
    files = package.render()
    after = _class(files["model.py"], "FeedForward")
    assert _method(after, "forward") == [
        "return self.w2(F.silu(self.w1(x)) * self.w3(x)) * self.gain"
    ]
    assert "self.gain = nn.Parameter(torch.ones(1))" in _method(after, "__init__")
    assert _method(after, "init_parameters")[-1] == "nn.init.ones_(self.gain)"
    assert ast.get_docstring(after) == "SwiGLU: w2(silu(w1(x)) * w3(x)), times `gain`."
    assert (
        '"model.layers.{}.mlp.global_scale": "layers.{}.feed_forward.gain"'
        in files["state_dict_adapter.py"]
    )


def test_without_the_attribute_the_edit_fails_loudly():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    with pytest.raises(EditError, match="gain attribute"):
        FfnOutputGain().apply(package, gain="")
