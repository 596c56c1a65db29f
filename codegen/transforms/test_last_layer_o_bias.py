"""LastLayerOutputBias: before/after on the llama reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.last_layer_o_bias import LastLayerOutputBias
from codegen.transforms.o_bias import SetOutputBias


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_only_the_last_layer_output_projection_gets_a_bias():
    package = _llama()
    before = package.render()["model.py"]
    assert "self.layers[-1]" not in before
    LastLayerOutputBias().apply(package, name="dense_bias")
    files = package.render()
    model = files["model.py"]
    layers = "self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))"
    bias = "self.layers[-1].attention.wo.bias = nn.Parameter(torch.zeros(args.dim))"
    assert model.index(layers) < model.index(bias)
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.dense_bias": "layers.{}.attention.wo.bias"' in adapter
    assert "o_proj.bias" not in adapter  # one row for the house bias: saved under its own name


def test_a_wo_bias_row_left_by_o_bias_is_replaced():
    package = _llama()
    SetOutputBias().apply(package, enabled=False)
    LastLayerOutputBias().apply(package, name="dense_bias")
    adapter = package.render()["state_dict_adapter.py"]
    assert adapter.count('"layers.{}.attention.wo.bias"') == 1


def test_a_name_that_is_no_attribute_is_an_error():
    with pytest.raises(EditError, match="attribute name"):
        LastLayerOutputBias().apply(_llama(), name="dense.bias")
