import libcst as cst
import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError, findall
from codegen.transforms.residual_affine import ResidualAffine

ZAYA = {
    label: {
        "module": module,
        "out_bias": "hidden_states_bias",
        "out_scale": "hidden_states_scale",
        "stream_bias": "residual_bias",
        "stream_scale": "residual_scale",
    }
    for label, module in (
        ("attention", "post_attention_residual_scale"),
        ("mlp", "post_mlp_residual_scale"),
    )
}


def _block_forward(model: cst.Module) -> cst.FunctionDef:
    (block,) = findall(model, m.ClassDef(name=m.Name("TransformerBlock")))
    (forward,) = findall(block, m.FunctionDef(name=m.Name("forward")))
    return forward


def _residual_call(attr: str, first: m.BaseMatcherNode, second: str) -> m.Call:
    return m.Call(
        func=m.Attribute(value=m.Name("self"), attr=m.Name(attr)),
        args=[m.Arg(first), m.Arg(m.Name(second))],
    )


@pytest.mark.parametrize("reference", ["llama", "qwen3_moe"])
def test_each_residual_add_becomes_its_affine_module(reference):
    package = SourcePackage.from_directory(references_dir() / reference)
    ResidualAffine().apply(package, modules=ZAYA)
    model = package.module("model.py")
    forward = _block_forward(model)
    attention = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("attention")))
    assert findall(forward, _residual_call("attention_residual", attention, "x"))
    assert findall(forward, _residual_call("ffn_residual", m.Call(), "h"))
    # no plain residual add is left
    assert not findall(forward, m.BinaryOperation(operator=m.Add(), right=m.Call()))
    (module,) = findall(model, m.ClassDef(name=m.Name("ResidualAffine")))
    assert findall(module, m.FunctionDef(name=m.Name("init_parameters")))
    adapter = package.render()["state_dict_adapter.py"]
    for hf, house in (
        ("post_attention_residual_scale.hidden_states_bias", "attention_residual.out_bias"),
        ("post_attention_residual_scale.residual_scale", "attention_residual.stream_scale"),
        ("post_mlp_residual_scale.hidden_states_scale", "ffn_residual.out_scale"),
        ("post_mlp_residual_scale.residual_bias", "ffn_residual.stream_bias"),
    ):
        assert f'"model.layers.{{}}.{hf}": "layers.{{}}.{house}"' in adapter


def test_without_both_modules_it_refuses():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError, match="residual modules"):
        ResidualAffine().apply(package, modules={"attention": ZAYA["attention"]})
