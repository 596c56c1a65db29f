"""SetRouterFp32: before/after on a package made MoE by add_moe."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.router_bias import SetRouterLinearBias
from codegen.transforms.router_fp32 import SetRouterFp32

CALL = "self.route(self.gate(x))"
FP32 = "self.route(F.linear(x.float(), self.gate.weight.float()))"


def moe_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="config")
    return package


def test_router_projects_in_fp32():
    package = moe_package()
    assert CALL in package.render()["model.py"]  # before: the Linear in the model's dtype
    SetRouterFp32().apply(package)
    model = package.render()["model.py"]
    assert FP32 in model
    assert CALL not in model
    # the weight stays an nn.Linear (same checkpoint key, same sharding)
    assert "self.gate = nn.Linear(args.dim, args.num_experts, bias=False)" in model


def test_router_bias_is_upcast_too():
    package = moe_package()
    SetRouterLinearBias().apply(package)
    SetRouterFp32().apply(package)
    model = package.render()["model.py"]
    expected = "F.linear(x.float(), self.gate.weight.float(), self.gate.bias.float())"
    assert expected in model


def test_twice_is_once():
    package = moe_package()
    SetRouterFp32().apply(package)
    once = package.render()
    SetRouterFp32().apply(package)
    assert package.render() == once


def test_no_router_is_an_error():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError):
        SetRouterFp32().apply(package)
