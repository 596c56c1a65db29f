"""AddSharedExperts: before/after on add_moe packages."""

from __future__ import annotations

import types

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.shared_experts import AddSharedExperts, size_field_of


def moe_package(dense_rule: str) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule=dense_rule, norm_topk_prob="config")
    return package


def test_shared_expert_joins_the_routed_output():
    package = moe_package("first_k")
    AddSharedExperts().apply(package, size="n_shared_experts")
    files = package.render()
    model = files["model.py"]
    assert "self.shared_experts = FeedForward(args.dim, args.shared_hidden_dim)" in model
    assert (
        "        out = self.experts(x, indices, weights)\n"
        "        out = out + self.shared_experts(x)\n"
        "        return out.view(batch, seq, dim)\n"
    ) in model
    assert (
        "shared_hidden_dim=hf_config.n_shared_experts * hf_config.moe_intermediate_size,"
        in files["args.py"]
    )
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.mlp.shared_experts.gate_proj.weight"' in adapter
    assert adapter.index("moe.experts.w2") < adapter.index("moe.shared_experts.w1")


def test_all_layer_moe_gets_its_feed_forward_class_back():
    package = moe_package("all")
    assert "class FeedForward" not in package.render()["model.py"]
    AddSharedExperts().apply(package, size="shared_expert_intermediate_size")
    model = package.render()["model.py"]
    assert model.index("class FeedForward") < model.index("class MoE")
    assert (
        "shared_hidden_dim=hf_config.shared_expert_intermediate_size,"
        in (package.render()["args.py"])
    )


def test_preconditions():
    with pytest.raises(EditError):
        AddSharedExperts().apply(
            SourcePackage.from_directory(references_dir() / "llama"), size="n_shared_experts"
        )


def _features(model_type: str):
    from codegen.analyze.locate import model_type_files

    source = types.SimpleNamespace(
        configuration=model_type_files(model_type)[1], config_class=model_type
    )
    return types.SimpleNamespace(model_type=model_type, source=source)


def test_size_field_from_the_config_source():
    assert size_field_of(_features("qwen2_moe")) == "shared_expert_intermediate_size"
    assert size_field_of(_features("glm4_moe")) == "n_shared_experts"
