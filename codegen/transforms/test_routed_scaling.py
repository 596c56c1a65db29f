"""SetRoutedScaling: before/after on an add_moe package."""

from __future__ import annotations

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.routed_scaling import SetRoutedScaling


def moe_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="config")
    return package


def test_scaling_comes_after_renormalisation():
    package = moe_package()
    SetRoutedScaling().apply(package)
    files = package.render()
    route = files["model.py"].split("    def route(", 1)[1]
    assert (
        "            weights = weights / weights.sum(dim=-1, keepdim=True)\n"
        "        weights = weights * self.routed_scaling\n"
        "        return weights.to(logits.dtype), indices\n"
    ) in route
    assert "self.routed_scaling = args.routed_scaling" in files["model.py"]
    assert "routed_scaling=hf_config.routed_scaling_factor," in files["args.py"]


def test_scaling_the_experts_output_where_the_source_does():
    """beam: `experts(...) * routed_scaling_factor`: the same sum, but the experts' stage
    computes what HF's does and a bf16 model rounds where HF rounds."""

    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    SetRoutedScaling().apply(package, on="output")
    model = package.render()["model.py"]
    assert "self.experts(x, indices, weights) * self.routed_scaling" in model
    assert "weights = weights * self.routed_scaling" not in model
