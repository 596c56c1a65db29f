"""WeightExpertInputs: before/after on an add_moe package; the experts it writes compute
sum_k expert_k(w_k * x), Llama4's order, not sum_k w_k * expert_k(x)."""

from __future__ import annotations

import libcst as cst
import torch
import torch.nn.functional as F
from torch import nn

from codegen.layers.grouped_mm import grouped_mm
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.weighted_expert_inputs import WeightExpertInputs


def weighted_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="config")
    WeightExpertInputs().apply(package)
    return package


def experts_class(model_source: str):
    module = cst.parse_module(model_source)
    (cls,) = [s for s in module.body if isinstance(s, cst.ClassDef) and s.name.value == "Experts"]
    namespace = {"torch": torch, "F": F, "nn": nn, "grouped_mm": grouped_mm}
    exec("from __future__ import annotations\n" + cst.Module([cls]).code, namespace)
    return namespace["Experts"]


def test_rows_are_weighted_before_the_experts():
    model = weighted_package().render()["model.py"]
    assert "rows = x[order // top_k] * weights.flatten()[order, None]" in model
    assert "] * weights.flatten()" not in model.split("rows = x[", 1)[1].split("\n", 1)[1]
    assert "before the experts run (Llama4)" in model


def test_experts_run_on_weighted_tokens():
    torch.manual_seed(0)
    experts = experts_class(weighted_package().render()["model.py"])(4, 8, 12)
    for p in experts.parameters():
        nn.init.normal_(p)
    x = torch.randn(7, 8)
    indices = torch.stack([torch.randperm(4)[:2] for _ in range(7)])
    weights = torch.rand(7, 2)
    want = torch.zeros_like(x)
    for t in range(7):
        for k in range(2):
            e, row = indices[t, k], weights[t, k] * x[t]
            hidden = F.silu(row @ experts.w1[e].T) * (row @ experts.w3[e].T)
            want[t] += hidden @ experts.w2[e].T
    got = experts(x, indices, weights)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_twice_is_once():
    package = weighted_package()
    once = package.render()
    WeightExpertInputs().apply(package)
    assert package.render() == once
