"""AddMoeOutputNorm: before/after on the deepseek_v3 reference (MoE with a shared expert)."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._ffn_edits import adapter_rows
from codegen.transforms.edits import EditError
from codegen.transforms.moe_output_norm import AddMoeOutputNorm


def package_of(name: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / name)


def test_the_moe_output_goes_through_its_own_norm():
    package = package_of("deepseek_v3")
    before = package.render()["model.py"]
    assert "return routed + self.shared_experts(x)" in before
    AddMoeOutputNorm().apply(package, name="post_mlp_layernorm")
    after = package.render()["model.py"]
    assert "return self.norm(routed + self.shared_experts(x))" in after
    assert "self.norm = RMSNorm(args.dim, args.norm_eps)" in after
    # the block's own norms and the dense feed-forward are untouched
    assert after.count("self.norm(") == before.count("self.norm(") + 1
    rows = dict(adapter_rows(package))
    assert rows["model.layers.{}.mlp.post_mlp_layernorm.weight"] == "layers.{}.moe.norm.weight"


def test_the_norm_is_built_like_the_block_norm():
    """A LayerNorm block (bias rows too) gets a LayerNorm MoE norm with both parameters."""
    from codegen.transforms.norm_bias import SetNormBias
    from codegen.transforms.norm_kind import SetNormKind

    package = package_of("qwen3_moe")
    SetNormKind().apply(package, kind="layernorm")
    SetNormBias().apply(package, enabled=True)
    AddMoeOutputNorm().apply(package, name="out_norm")
    rows = dict(adapter_rows(package))
    assert rows["model.layers.{}.mlp.out_norm.weight"] == "layers.{}.moe.norm.weight"
    assert rows["model.layers.{}.mlp.out_norm.bias"] == "layers.{}.moe.norm.bias"


def test_refuses_a_dense_package():
    with pytest.raises(EditError, match="MoE"):
        AddMoeOutputNorm().apply(package_of("llama"), name="post_mlp_layernorm")
