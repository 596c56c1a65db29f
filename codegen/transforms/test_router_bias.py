"""SetRouterLinearBias: before/after on an add_moe package."""

from __future__ import annotations

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.router_bias import SetRouterLinearBias


def moe_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="config")
    return package


def test_router_linear_bias():
    package = moe_package()
    SetRouterLinearBias().apply(package)
    files = package.render()
    assert "self.gate = nn.Linear(args.dim, args.num_experts, bias=True)" in files["model.py"]
    assert 'self.normal_init = ("gate.bias",)' in files["model.py"]
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.gate.bias": "layers.{}.moe.gate.bias",' in adapter
    assert adapter.index("moe.gate.weight") < adapter.index("moe.gate.bias")
