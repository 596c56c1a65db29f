"""ScoreActivation: before/after on the deepseek_v3 reference: the Gate's sigmoid scores
become sqrt(softplus(logits)); the bias, the pick, the renormalisation and the scaling stay."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import EditError, code_of
from codegen.transforms.score_activation import ScoreActivation


def test_the_gate_scores_by_sqrt_softplus():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    before = code_of(find_method(package.module("model.py"), "Gate", "forward"))
    assert "scores = logits.sigmoid()" in before
    ScoreActivation().apply(package, activation="sqrtsoftplus")
    forward = code_of(find_method(package.module("model.py"), "Gate", "forward"))
    assert "scores = F.softplus(logits).sqrt()" in forward and "sigmoid" not in forward
    for kept in ("self.e_score_correction_bias", "weights / (weights.sum(", "self.route_scale"):
        assert kept in forward
    files = package.render()
    assert '"""Router of sqrt(softplus(logits)) scores with a selection-only' in files["model.py"]
    assert "sigmoid" not in files["args.py"]


def test_another_activation_is_refused():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    with pytest.raises(EditError):
        ScoreActivation().apply(package, activation="tanh")


def test_the_sigmoid_route_a_softmax_moe_was_given_scores_by_sqrt_softplus():
    # qwen3_moe's router made a sigmoid one by moe_router: its scores are in MoE.route
    from codegen.transforms.moe_router import SetMoeRouter

    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    SetMoeRouter().apply(package, router="sigmoid_topk", correction_bias=True)
    assert "scores = logits.float().sigmoid()" in code_of(
        find_method(package.module("model.py"), "MoE", "route")
    )
    ScoreActivation().apply(package, activation="sqrtsoftplus")
    route = code_of(find_method(package.module("model.py"), "MoE", "route"))
    assert "scores = F.softplus(logits.float()).sqrt()" in route and "sigmoid" not in route
    assert "self.e_score_correction_bias" in route
