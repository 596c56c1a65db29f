"""ScoredSharedExperts and RouterGain: before/after on an add_moe package with a sigmoid
router (the router rules run first, as the rule table orders them)."""

from __future__ import annotations

import ast

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.moe_router import SetMoeRouter
from codegen.transforms.routed_scaling import SetRoutedScaling
from codegen.transforms.router_gain import RouterGain
from codegen.transforms.scored_shared_experts import ScoredSharedExperts

SHARED = {
    "module": "shared_experts",
    "count": "config.n_shared_experts",
    "gate": "gate_proj",
    "up": "up_proj",
    "down": "down_proj",
}


def _method(code: str, cls: str, name: str) -> list[str]:
    found = next(n for n in ast.parse(code).body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in found.body if isinstance(n, ast.FunctionDef) and n.name == name)
    docstring = ast.get_docstring(method) is not None
    return [ast.unparse(s) for s in method.body[docstring:]]


def _from_hf_map(code: str) -> dict:
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "from_hf_map":
            return ast.literal_eval(node.value)
    raise AssertionError("no from_hf_map")


@pytest.fixture
def package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="config")
    SetMoeRouter().apply(package, router="sigmoid_topk", correction_bias=True)
    SetRoutedScaling().apply(package)
    return package


def test_the_router_scores_the_shared_experts_and_normalises_them_with_the_picked(package):
    ScoredSharedExperts().apply(package, shared=SHARED)
    RouterGain().apply(package, gain="global_scale")
    files = package.render()
    model = files["model.py"]
    init = _method(model, "MoE", "__init__")
    assert "self.gate = nn.Linear(args.dim, args.num_experts + args.n_shared, bias=False)" in init
    assert "self.shared_experts = SharedExperts(args.n_shared, args.dim, args.moe_hidden_dim)" in (
        init
    )
    assert "self.router_gain = nn.Parameter(torch.ones(1))" in init
    route = _method(model, "MoE", "route")
    assert route[-4:] == [
        "chosen = F.logsigmoid(torch.cat([routed.gather(1, indices), shared], dim=-1))",
        "weights = (chosen - chosen.logsumexp(dim=-1, keepdim=True)).exp()",
        "weights = weights * self.routed_scaling * self.router_gain.float()",
        "return (weights[:, :self.top_k], indices, weights[:, self.top_k:])",
    ]
    assert "indices = (scores + self.e_score_correction_bias).topk(self.top_k, dim=-1)[1]" in route
    forward = _method(model, "MoE", "forward")
    assert "out = self.experts(x, indices, weights) + self.shared_experts(x, shared_weights)" in (
        forward
    )
    shared = _method(model, "SharedExperts", "forward")
    assert shared[-1] == "return torch.bmm(hidden, self.w2.mT).float().sum(dim=0).to(x.dtype)"
    assert "hidden = hidden * weights.T[..., None].to(x.dtype)" in shared
    assert _method(model, "MoE", "init_parameters") == ["nn.init.ones_(self.router_gain)"]
    rows = _from_hf_map(files["state_dict_adapter.py"])
    for hf, house in (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2")):
        assert rows[f"model.layers.{{}}.mlp.shared_experts.{hf}"] == (
            f"layers.{{}}.moe.shared_experts.{house}"
        )
    assert rows["model.layers.{}.mlp.gate.global_scale"] == "layers.{}.moe.router_gain"
    assert "n_shared=hf_config.n_shared_experts" in files["args.py"]


def test_without_the_fact_or_under_another_router_the_edits_fail_loudly(package):
    with pytest.raises(EditError, match="moe.scored_shared"):
        ScoredSharedExperts().apply(package, shared=None)
    with pytest.raises(EditError, match="gain attribute"):
        RouterGain().apply(package, gain="")
