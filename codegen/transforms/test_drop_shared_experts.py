"""DropSharedExperts: before/after on the deepseek_v3 reference."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_shared_experts import DropSharedExperts
from codegen.transforms.edits import EditError


def _package() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def _moe(files: dict[str, str]) -> str:
    return files["model.py"].split("class MoE(", 1)[1].split("\nclass ", 1)[0]


def test_the_moe_returns_the_routed_output_alone():
    before = _package().render()
    assert "self.shared_experts = FeedForward(" in _moe(before)
    assert "return routed + self.shared_experts(x)" in _moe(before)
    package = _package()
    DropSharedExperts().apply(package)
    files = package.render()
    moe = _moe(files)
    assert "shared_experts" not in moe
    assert "        return self.experts(" in moe and "routed =" not in moe
    assert "shared_experts" not in files["state_dict_adapter.py"]
    assert "shared expert" in before["state_dict_adapter.py"]  # its rows' own comment
    assert "shared expert" not in files["state_dict_adapter.py"]  # went with them
    assert '"model.layers.{}.mlp.experts.{}.gate_proj.weight"' in files["state_dict_adapter.py"]
    # the dense layers keep their feed-forward
    assert "self.feed_forward = FeedForward(args.dim, args.hidden_dim)" in files["model.py"]


def test_a_moe_without_a_shared_expert_is_an_error():
    package = _package()
    DropSharedExperts().apply(package)
    with pytest.raises(EditError, match="shared_experts 0x"):
        DropSharedExperts().apply(package)
