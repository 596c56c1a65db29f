"""MoeProjections: before/after on the qwen3_moe reference with fused experts."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.fused_experts import FuseExperts
from codegen.transforms.moe_projections import MoeProjections

FOUND = {
    "router": "router.layer",
    "gate_up": "input_linear",
    "down": "output_linear",
    "bias": "bias",
}


def _fused():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    FuseExperts().apply(package, layout="concat", transposed=False)
    return package


def test_before_the_rows_name_the_transformers_modules():
    adapter = _fused().render()["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.gate.weight": "layers.{}.moe.gate.weight"' in adapter
    assert "input_linear" not in adapter


def test_after_the_rows_name_the_stacked_projections_and_the_bias_is_added():
    package = _fused()
    MoeProjections().apply(package, projections=FOUND)
    files = package.render()
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.router.layer.weight": "layers.{}.moe.gate.weight"' in adapter
    assert '"model.layers.{}.mlp.input_linear.weight": "layers.{}.moe.experts.w13"' in adapter
    assert '"model.layers.{}.mlp.output_linear.weight": "layers.{}.moe.experts.w2"' in adapter
    assert '"model.layers.{}.mlp.bias": "layers.{}.moe.bias"' in adapter
    model = files["model.py"]
    assert "self.bias = nn.Parameter(torch.empty(args.dim))" in model
    assert "+ self.bias" in model[model.index("class MoE") :]


def test_without_a_bias_no_parameter():
    package = _fused()
    MoeProjections().apply(package, projections={**FOUND, "bias": None})
    assert "self.bias" not in package.render()["model.py"]


def test_a_malformed_finding_is_refused():
    with pytest.raises(EditError):
        MoeProjections().apply(_fused(), projections={**FOUND, "down": None})
