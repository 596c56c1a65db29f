"""ZeroInitRouter: before/after on the MoE references, and init_weights really zeroes it."""

import sys

import pytest
import torch

from codegen.models import load_spec, references_dir
from codegen.scaffold.build import Step
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.router_zero_init import ZeroInitRouter


@pytest.mark.parametrize("reference", ["qwen3_moe", "deepseek_v3"])
def test_moe_init_parameters_zeroes_the_router(reference):
    package = SourcePackage.from_directory(references_dir() / reference)
    assert "nn.init.zeros_(self.gate.weight)" not in package.render()["model.py"]
    ZeroInitRouter().apply(package)
    model = package.render()["model.py"]
    assert "def init_parameters(self, std: float) -> None:" in model
    assert "nn.init.zeros_(self.gate.weight)" in model


def test_dense_reference_has_no_router_to_zero():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError):
        ZeroInitRouter().apply(package)


def test_init_weights_starts_the_router_at_zero_and_the_rest_random(tmp_path):
    models = tmp_path / "models"
    scaffold_into(models, "qwen3_moe", "zeroed", ["qwen3_moe"], [Step("zero_init_router")])
    spec = load_spec("zeroed", models)
    module = sys.modules[spec.model.__module__]
    args = spec.args(dim=32, n_heads=4, n_kv_heads=2, head_dim=8, n_layers=1, vocab_size=64)
    model = module.Model(args)
    model.init_weights()
    moe = next(m for m in model.modules() if type(m).__name__ == "MoE")
    assert torch.count_nonzero(moe.gate.weight) == 0
    assert torch.count_nonzero(model.layers[0].attention.wq.weight) > 0
