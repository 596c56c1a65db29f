"""RouterHalfLogits: before/after on the deepseek_v3 reference's Gate."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.router_half_logits import RouterHalfLogits

FP32 = "logits = F.linear(x.reshape(-1, x.shape[-1]).float(), self.weight.float())"
HALF = "logits = F.linear(x.reshape(-1, x.shape[-1]), self.weight)"


def gate_package() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def test_router_projects_in_the_models_dtype():
    package = gate_package()
    before = package.render()["model.py"]
    assert FP32 in before and "grouped top-k, in fp32." in before
    RouterHalfLogits().apply(package, scores_fp32=False)
    model = package.render()["model.py"]
    assert HALF in model and FP32 not in model
    # the scores follow the logits' dtype; the docstring no longer says fp32
    assert "scores = logits.sigmoid()" in model
    assert '"""Sigmoid router with a selection-only correction bias and grouped top-k."""' in model
    # the weight stays a Parameter of the Gate (same checkpoint key, same sharding)
    assert "self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.dim))" in model


def test_fp32_scores_of_the_rounded_logits():
    package = gate_package()
    RouterHalfLogits().apply(package, scores_fp32=True)
    model = package.render()["model.py"]
    assert HALF in model
    assert "scores = logits.float().sigmoid()" in model


@pytest.mark.parametrize("scores_fp32", [True, False])
def test_twice_is_once(scores_fp32):
    package = gate_package()
    RouterHalfLogits().apply(package, scores_fp32=scores_fp32)
    once = package.render()
    RouterHalfLogits().apply(package, scores_fp32=scores_fp32)
    assert package.render() == once


def test_no_gate_is_an_error():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError):
        RouterHalfLogits().apply(package, scores_fp32=True)
