"""AddSharedExperts: before/after on add_moe packages."""

from __future__ import annotations

import types

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.ffn_bias import SetFeedForwardBias
from codegen.transforms.shared_experts import PROJECTIONS, AddSharedExperts, size_of


def moe_package(dense_rule: str) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule=dense_rule, norm_topk_prob="config")
    return package


def test_shared_expert_joins_the_routed_output():
    package = moe_package("first_k")
    SetFeedForwardBias().apply(package, enabled=False)  # no mlp_bias switch: fixed
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


def _features(model_type: str, shared_size: str | None = None):
    from codegen.analyze.locate import model_type_files

    source = types.SimpleNamespace(
        configuration=model_type_files(model_type)[1], config_class=model_type
    )
    values = {"moe.shared_size": shared_size}
    return types.SimpleNamespace(model_type=model_type, source=source, get=values.get)


def test_size_field_from_the_config_source():
    assert size_of(_features("qwen2_moe")) == "shared_expert_intermediate_size"
    assert size_of(_features("glm4_moe")) == "n_shared_experts"


def test_size_the_analysis_read_comes_first():
    # a config with neither named field (the shared size is moe_num_shared_experts wide)
    expression = "config.intermediate_size * config.moe_num_shared_experts"
    assert size_of(_features("qwen2_moe", expression)) == expression
    package = moe_package("all")
    AddSharedExperts().apply(package, _features("qwen2_moe", expression))
    assert (
        "shared_hidden_dim=hf_config.intermediate_size * hf_config.moe_num_shared_experts,"
        in package.render()["args.py"]
    )
    with pytest.raises(ValueError, match="expression over config"):
        AddSharedExperts().apply(moe_package("all"), size="2 * intermediate_size")


def test_a_returned_routed_output_is_named_first():
    """The qwen3_moe reference returns `self.experts(...).view(...)` directly."""
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    before = package.render()["model.py"]
    assert "        return self.experts(x, indices, weights).view(batch, seq, dim)\n" in before
    AddSharedExperts().apply(package, size="config.shared_expert_intermediate_size")
    model = package.render()["model.py"]
    assert (
        "        out = self.experts(x, indices, weights)\n"
        "        out = out + self.shared_experts(x)\n"
        "        return out.view(batch, seq, dim)\n"
    ) in model
    assert model.count("class FeedForward") == 1  # the reference's dense one is reused


def test_an_optional_shared_expert_is_built_only_when_sized():
    package = moe_package("all")
    AddSharedExperts().apply(package, size="n_shared_experts", optional=True)
    model = package.render()["model.py"]
    assert "if args.shared_hidden_dim > 0 else None" in model
    assert (
        "        if self.shared_experts is not None:\n"
        "            out = out + self.shared_experts(x)\n"
    ) in model
    plain = moe_package("all")
    AddSharedExperts().apply(plain, size="n_shared_experts")
    assert "self.shared_experts is not None" not in plain.render()["model.py"]


def test_shared_expert_is_biased_as_the_block_mlp():
    """llama's block passes `bias=args.mlp_bias` (hy_v3's switch biases its shared MLP too)."""
    package = moe_package("first_k")
    assert (
        "FeedForward(args.dim, args.hidden_dim, bias=args.mlp_bias)" in package.render()["model.py"]
    )
    AddSharedExperts().apply(package, size="n_shared_experts")
    files = package.render()
    built = (
        "self.shared_experts = FeedForward(args.dim, args.shared_hidden_dim, bias=args.mlp_bias)"
    )
    assert built in files["model.py"]
    adapter = files["state_dict_adapter.py"]
    for hf, house in PROJECTIONS:
        row = f"model.layers.{{}}.mlp.shared_experts.{hf}.bias"
        assert f'"{row}"' in adapter and f"moe.shared_experts.{house}.bias" in adapter
