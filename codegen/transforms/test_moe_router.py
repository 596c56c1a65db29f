"""SetMoeRouter: before/after on a package made MoE by add_moe."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.moe_router import SetMoeRouter


def moe_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="first_k", norm_topk_prob="config")
    return package


def route_of(model: str) -> str:
    return model.split("    def route(", 1)[1].split("    def forward(", 1)[0]


def test_grouped_sigmoid_router_with_correction_bias():
    package = moe_package()
    SetMoeRouter().apply(package, router="grouped_topk", correction_bias=True)
    files = package.render()
    route = route_of(files["model.py"])
    assert "scores = logits.float().sigmoid()" in route
    assert "softmax" not in route
    assert (
        "choice = (scores + self.e_score_correction_bias).view(scores.shape[0], self.n_groups, -1)"
        in route
    )
    assert "group_scores = choice.topk(2, dim=-1)[0].sum(dim=-1)" in route
    assert "weights = scores.gather(1, indices)" in route  # unbiased weights
    # the renormalisation switch and the return survive, after the selection
    assert route.index("gather") < route.index("if self.norm_topk_prob") < route.index("return")
    model = files["model.py"]
    assert 'self.register_buffer("e_score_correction_bias", torch.zeros(args.num_experts))' in model
    assert "self.n_groups, self.topk_groups = args.n_groups, args.topk_groups" in model
    assert "n_groups=hf_config.n_group," in files["args.py"]
    assert "topk_groups=hf_config.topk_group," in files["args.py"]
    adapter = files["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.mlp.gate.e_score_correction_bias": '
        '"layers.{}.moe.e_score_correction_bias",'
    ) in adapter


def test_sigmoid_topk_without_bias_or_groups():
    package = moe_package()
    SetMoeRouter().apply(package, router="sigmoid_topk")
    model = package.render()["model.py"]
    route = route_of(model)
    assert "scores = logits.float().sigmoid()" in route
    assert "weights, indices = scores.topk(self.top_k, dim=-1)" in route
    assert "e_score_correction_bias" not in model and "n_groups" not in model


def test_softmax_with_correction_bias_and_running_twice_converges():
    package = moe_package()
    SetMoeRouter().apply(package, router="softmax_topk", correction_bias=True)
    once = package.render()
    SetMoeRouter().apply(package, router="softmax_topk", correction_bias=True)
    assert package.render() == once
    route = route_of(once["model.py"])
    assert "scores = F.softmax(logits, dim=-1, dtype=torch.float32)" in route
    assert "indices = (scores + self.e_score_correction_bias).topk(self.top_k, dim=-1)[1]" in route


def test_a_bias_on_the_raw_logits_picks_and_the_scores_weight():
    """kolibri1: topk(logits + bias) picks, sigmoid(logits) of the picked weights them; a
    sigmoid is monotonic but adding after it picks other experts than adding before it."""
    package = moe_package()
    SetMoeRouter().apply(package, router="sigmoid_topk", correction_bias=True)
    assert "(scores + self.e_score_correction_bias)" in route_of(package.render()["model.py"])
    package = moe_package()
    SetMoeRouter().apply(package, router="sigmoid_topk", correction_bias=True, bias_on="logits")
    route = route_of(package.render()["model.py"])
    assert "scores = logits.float().sigmoid()" in route
    picked = "indices = (logits.float() + self.e_score_correction_bias).topk(self.top_k, dim=-1)[1]"
    assert picked in route
    assert "weights = scores.gather(1, indices)" in route
    with pytest.raises(ValueError):
        SetMoeRouter().apply(package, router="sigmoid_topk", correction_bias=True, bias_on="x")


def test_needs_a_moe_block_and_a_known_router():
    with pytest.raises(EditError):
        SetMoeRouter().apply(
            SourcePackage.from_directory(references_dir() / "llama"), router="sigmoid_topk"
        )
    with pytest.raises(ValueError, match="router"):
        SetMoeRouter().apply(moe_package(), router="expert_choice")


def test_running_twice_adds_the_group_fields_once():
    """A plan may apply the router step and a router-bias step that re-runs it (dots1): the
    group fields and their init line are added once."""
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    SetMoeRouter().apply(package, router="grouped_topk", correction_bias=True)
    SetMoeRouter().apply(package, router="grouped_topk", correction_bias=True)
    files = package.render()
    assert files["model.py"].count("self.n_groups, self.topk_groups =") == 1
    assert files["model.py"].count('register_buffer("e_score_correction_bias"') == 1
    assert files["args.py"].count("n_groups=") == 1
