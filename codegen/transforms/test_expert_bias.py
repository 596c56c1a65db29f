"""SetExpertBias: before/after on fused (gpt_oss) and per-expert (qwen3_moe) experts."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.expert_bias import SetExpertBias
from codegen.transforms.fused_experts import FuseExperts


def test_fused_experts_get_one_bias_per_product():
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="always")
    FuseExperts().apply(package, layout="interleaved", transposed=True)
    SetExpertBias().apply(package)
    files = package.render()
    model = files["model.py"]
    assert "self.w13_bias = nn.Parameter(torch.empty(num_experts, 2 * hidden_dim))" in model
    assert "self.w2_bias = nn.Parameter(torch.empty(num_experts, dim))" in model
    assert "experts = indices.flatten()[order]  # the expert of each sorted row" in model
    assert (
        "gate_up = grouped_mm(rows, self.w13, offs=offsets).add_(self.w13_bias[experts])\n" in model
    )
    assert "grouped_mm(hidden, self.w2, offs=offsets).add_(self.w2_bias[experts])" in model
    adapter = files["state_dict_adapter.py"]
    rows = (
        '"model.layers.{}.mlp.experts.gate_up_proj": "layers.{}.moe.experts.w13",\n'
        '        "model.layers.{}.mlp.experts.gate_up_proj_bias": '
        '"layers.{}.moe.experts.w13_bias",\n'
    )
    assert rows in adapter
    assert '"model.layers.{}.mlp.experts.down_proj_bias": "layers.{}.moe.experts.w2_bias",' in (
        adapter
    )


def test_per_expert_weights_get_stacked_biases():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    SetExpertBias().apply(package)
    files = package.render()
    model = files["model.py"]
    for weight, out in (("w1", "hidden_dim"), ("w2", "dim"), ("w3", "hidden_dim")):
        assert f"self.{weight}_bias = nn.Parameter(torch.empty(num_experts, {out}))" in model
    assert (
        "hidden *= grouped_mm(rows, self.w3.mT, offs=offsets).add_(self.w3_bias[experts])" in model
    )
    # the shared experts stay plain: the package edits its own copy (the shared grouped
    # product stays imported)
    assert "class Experts" in model and "import Experts" not in model
    assert "from codegen.layers.grouped_mm import grouped_mm" in model
    adapter = files["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.mlp.experts.{}.gate_proj.bias": "layers.{}.moe.experts.w1_bias",'
        in adapter
    )


def test_refuses_without_experts():
    with pytest.raises(EditError, match="no Experts class"):
        SetExpertBias().apply(SourcePackage.from_directory(references_dir() / "llama"))
