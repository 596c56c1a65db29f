"""OutputConvs: before/after on the qwen3 reference (dense) and the qwen3_moe one (the
MoE's call filtered alike)."""

from __future__ import annotations

import ast

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.output_convs import OutputConvs

CONVS = {
    "convs": (("attn_sconv", "attention"), ("mlp_sconv", "ffn")),
    "conv": "conv1d",
    "kernel": 4,
    "kernel_field": "conv_kernel_size",
    "fp32": True,
}


def _package(reference="qwen3", convs=CONVS) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / reference)
    OutputConvs().apply(package, convs=convs)
    return package


def _method(code: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(code)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_each_sublayers_output_is_filtered_before_its_residual_add():
    before = SourcePackage.from_directory(references_dir() / "qwen3").render()["model.py"]
    assert _method(before, "TransformerBlock", "forward") == [
        "h = x + self.attention(self.attention_norm(x), rope, mask)",
        "return h + self.feed_forward(self.ffn_norm(h))",
    ]
    files = _package().render()
    assert _method(files["model.py"], "TransformerBlock", "forward") == [
        "h = x + self.attention_conv(self.attention(self.attention_norm(x), rope, mask))",
        "return h + self.ffn_conv(self.feed_forward(self.ffn_norm(h)))",
    ]
    init = _method(files["model.py"], "TransformerBlock", "__init__")
    assert "self.attention_conv = CausalConv(args.dim, args.conv_kernel)" in init
    assert "self.ffn_conv = CausalConv(args.dim, args.conv_kernel)" in init
    adapter = files["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.attn_sconv.conv1d.weight": "layers.{}.attention_conv.conv.weight"'
        in adapter
    )
    assert '"model.layers.{}.mlp_sconv.conv1d.weight": "layers.{}.ffn_conv.conv.weight"' in adapter


def test_a_moe_layers_output_is_filtered_too():
    forward = "\n".join(
        _method(_package("qwen3_moe").render()["model.py"], "TransformerBlock", "forward")
    )
    assert "return h + self.ffn_conv(ffn(self.ffn_norm(h)))" in forward


def test_a_filter_on_another_sublayer_fails_loudly():
    with pytest.raises(EditError, match="router"):
        _package(convs={**CONVS, "convs": (("x_sconv", "router"),)})
