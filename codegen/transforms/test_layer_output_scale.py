"""LayerOutputScale: before/after on the qwen3 reference; the block's output is its sums times
the stored scale, which starts at one and maps to the HF layer key."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.layer_output_scale import LayerOutputScale

_SCALED_RETURN = m.Return(
    value=m.BinaryOperation(
        operator=m.Multiply(),
        right=m.Attribute(value=m.Name("self"), attr=m.Name("output_scale")),
    )
)


def _scaled(trained: bool) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    LayerOutputScale().apply(package, attribute="layer_scalar", trained=trained)
    return package


def _block(package):
    (block,) = m.findall(package.module("model.py"), m.ClassDef(name=m.Name("TransformerBlock")))
    return block


def test_buffer_scale_multiplies_the_blocks_output_and_maps_the_key():
    package = _scaled(trained=False)
    block = _block(package)
    assert len(m.findall(block, _SCALED_RETURN)) == 1
    register = m.Call(
        func=m.Attribute(value=m.Name("self"), attr=m.Name("register_buffer")),
        args=[m.Arg(m.SimpleString('"output_scale"')), m.Arg()],
    )
    assert m.findall(block, register)
    assert m.findall(block, m.FunctionDef(name=m.Name("init_parameters")))
    adapter = package.render()["state_dict_adapter.py"]
    assert '"model.layers.{}.layer_scalar": "layers.{}.output_scale"' in adapter


def test_trained_scale_is_a_parameter():
    block = _block(_scaled(trained=True))
    parameter = m.Call(func=m.Attribute(value=m.Name("nn"), attr=m.Name("Parameter")))
    assert m.findall(block, parameter)
    assert not m.findall(block, m.Attribute(attr=m.Name("register_buffer")))


def test_the_scale_is_a_checkpoint_buffer_that_starts_at_one(tmp_path):
    folder = tmp_path / "gen_output_scale"
    folder.mkdir()
    for filename, text in _scaled(trained=False).render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_output_scale.args")
        model_module = importlib.import_module("gen_output_scale.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8)
    args.vocab_size, args.hidden_dim = 32, 24
    model = model_module.Model(args)
    assert "layers.0.output_scale" in model.state_dict()
    assert not [n for n, _ in model.named_parameters() if "output_scale" in n]
    model.layers[0].output_scale.fill_(7.0)
    model.init_weights()
    assert torch.equal(model.layers[0].output_scale, torch.ones(1))


def test_a_block_that_starts_its_own_parameters_is_an_error():
    package = _scaled(trained=False)
    with pytest.raises(EditError):
        LayerOutputScale().apply(package, attribute="layer_scalar")
