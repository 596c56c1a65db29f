"""RouterHalfScores: before/after on a package made MoE by add_moe with a sigmoid router, and
the dtype of the scores and of the biased pick in a bf16 model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.moe_router import SetMoeRouter
from codegen.transforms.router_half_scores import RouterHalfScores

UPCAST = "scores = logits.float().sigmoid()"
BIASED = "(scores + self.e_score_correction_bias).topk"


def sigmoid_package(correction_bias: bool = True) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="config")
    SetMoeRouter().apply(package, router="sigmoid_topk", correction_bias=correction_bias)
    return package


def test_before_the_scores_are_upcast():
    model = sigmoid_package().render()["model.py"]
    assert UPCAST in model and BIASED in model


def test_after_the_sigmoid_runs_in_the_logits_dtype_and_the_bias_adds_in_fp32():
    package = sigmoid_package()
    RouterHalfScores().apply(package)
    model = package.render()["model.py"]
    assert UPCAST not in model and BIASED not in model
    assert "scores = logits.sigmoid()" in model
    assert "(scores.float() + self.e_score_correction_bias.float()).topk" in model
    RouterHalfScores().apply(package)  # a second run changes nothing
    assert package.render()["model.py"] == model


def test_without_a_selection_bias_only_the_sigmoid_changes():
    package = sigmoid_package(correction_bias=False)
    RouterHalfScores().apply(package)
    model = package.render()["model.py"]
    assert "scores = logits.sigmoid()" in model
    assert ".float()" not in model.split("def route", 1)[1].split("def forward", 1)[0]


def test_a_softmax_router_is_refused():
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="config")
    with pytest.raises(EditError):
        RouterHalfScores().apply(package)


def test_bf16_scores_round_like_hf_and_the_pick_sees_the_fp32_sum():
    package = sigmoid_package()
    RouterHalfScores().apply(package)
    code = package.render()["model.py"]
    start = code.index("    def route(")
    end = code.index("    def forward(", start)
    body = "\n".join(line[4:] for line in code[start:end].splitlines())
    scope = {"torch": torch}
    exec(body, scope)
    logits = torch.randn(5, 8).to(torch.bfloat16)
    bias = torch.randn(8) * 1e-3
    module = SimpleNamespace(
        top_k=2, e_score_correction_bias=bias, norm_topk_prob=False, routed_scaling=1.0
    )
    weights, indices = scope["route"](module, logits)
    scores = logits.sigmoid()  # bf16, as the router computes it
    want = (scores + bias).topk(2, dim=-1)[1]  # bf16 + fp32 promotes the sum only
    assert torch.equal(indices, want)
    assert weights.dtype == torch.bfloat16
    assert torch.equal(weights, scores.gather(1, want))
