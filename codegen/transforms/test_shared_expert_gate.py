"""AddSharedExpertGate: before/after on an add_moe package with a shared expert."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.shared_expert_gate import AddSharedExpertGate
from codegen.transforms.shared_experts import AddSharedExperts


def moe_package(dense_rule: str) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule=dense_rule, norm_topk_prob="config")
    return package


def test_gate_scales_the_shared_expert_and_is_named_beside_it():
    package = moe_package("sparse_step")
    AddSharedExperts().apply(
        package, size="shared_expert_intermediate_size", hf_name="shared_expert"
    )
    AddSharedExpertGate().apply(package)
    files = package.render()
    model = files["model.py"]
    assert "self.shared_expert_gate = nn.Linear(args.dim, 1, bias=False)" in model
    assert "out = out + F.sigmoid(self.shared_expert_gate(x)) * self.shared_experts(x)" in model
    assert "out = out + self.shared_experts(x)\n" not in model
    adapter = files["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.mlp.shared_expert_gate.weight": '
        '"layers.{}.moe.shared_expert_gate.weight",'
    ) in adapter


def test_needs_a_shared_expert():
    with pytest.raises(EditError):
        AddSharedExpertGate().apply(moe_package("all"))


def test_gate_key_is_named_beside_a_deepseek_style_shared_expert_too():
    package = moe_package("first_k")
    AddSharedExperts().apply(package, size="n_shared_experts")
    AddSharedExpertGate().apply(package)
    adapter = package.render()["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.shared_expert_gate.weight"' in adapter
