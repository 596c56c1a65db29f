"""ScoreSwitch: before/after on the references: the router's scores become
`router_scores(<logits>, self.scoring_func)` (the sigmoid or sqrt(softplus)), ModelArgs gains
`scoring_func` (its default the activation the router computed), `from_hf_config` reads the
config's field and refuses any other value; the bias, the pick and the scaling stay."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import EditError, code_of
from codegen.transforms.score_switch import ScoreSwitch


def _method(package, cls, name) -> str:
    return code_of(find_method(package.module("model.py"), cls, name))


def test_the_gate_scores_by_the_switch():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    assert "scores = logits.sigmoid()" in _method(package, "Gate", "forward")
    ScoreSwitch().apply(package, field="scoring_func")
    forward = _method(package, "Gate", "forward")
    assert "scores = router_scores(logits, self.scoring_func)" in forward
    for kept in ("self.e_score_correction_bias", "weights / (weights.sum(", "self.route_scale"):
        assert kept in forward
    assert "self.scoring_func = args.scoring_func" in _method(package, "Gate", "__init__")
    files = package.render()
    assert '"sqrtsoftplus": lambda x: F.softplus(x).sqrt(),' in files["model.py"]
    assert '"""Router of scores by the activation scoring_func names' in files["model.py"]
    assert 'scoring_func: str = "sigmoid"' in files["args.py"]
    assert "scoring_func=hf_config.scoring_func," in files["args.py"]
    assert "if hf_config.scoring_func not in score_functions:" in files["args.py"]


def test_the_default_is_the_activation_the_router_computed():
    # DeepSeek-V4-like: score_activation made the scores sqrt(softplus) first
    from codegen.transforms.score_activation import ScoreActivation

    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    ScoreActivation().apply(package, activation="sqrtsoftplus")
    ScoreSwitch().apply(package, field="score_kind")
    assert "router_scores(logits, self.scoring_func)" in _method(package, "Gate", "forward")
    files = package.render()
    assert 'scoring_func: str = "sqrtsoftplus"' in files["args.py"]
    assert "scoring_func=hf_config.score_kind," in files["args.py"]


def test_the_sigmoid_route_of_a_moe_scores_by_the_switch():
    from codegen.transforms.moe_router import SetMoeRouter

    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    SetMoeRouter().apply(package, router="sigmoid_topk", correction_bias=True)
    ScoreSwitch().apply(package, field="scoring_func")
    route = _method(package, "MoE", "route")
    assert "scores = router_scores(logits.float(), self.scoring_func)" in route
    assert "self.e_score_correction_bias" in route


def test_a_router_without_sigmoid_or_sqrt_softplus_scores_is_refused():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")  # softmax scores
    with pytest.raises(EditError):
        ScoreSwitch().apply(package, field="scoring_func")


def test_the_router_scores_by_every_activation_of_the_table():
    """`router_scores` computes each name of the table as the activation torch computes
    (transformers' ACT2FN by the same name, where installed)."""
    import torch
    import torch.nn.functional as F

    from codegen.transforms.score_switch import SCORES

    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    ScoreSwitch().apply(package, field="scoring_func")
    code = package.render()["model.py"]
    start = code.index("ROUTER_SCORES = {")
    namespace: dict = {"torch": torch, "F": F}
    exec(code[start : code.index("\nclass ", start)], namespace)
    assert set(namespace["ROUTER_SCORES"]) == set(SCORES) and len(SCORES) > 2
    activations = pytest.importorskip("transformers.activations")
    logits = torch.randn(3, 8)
    for name in SCORES:
        ours = namespace["router_scores"](logits, name)
        torch.testing.assert_close(ours, activations.ACT2FN[name](logits), msg=name)


def test_the_inserted_check_refuses_another_value_in_one_line():
    from types import SimpleNamespace

    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    ScoreSwitch().apply(package, field="scoring_func")
    code = package.render()["args.py"]
    start = code.index("        score_functions = (")
    check = code[start : code.index("        _check_supported(", start)]
    namespace: dict = {}
    exec("def check(hf_config):\n" + check, namespace)  # the inserted statements alone
    for name in ("sqrtsoftplus", "sigmoid", "gelu_pytorch_tanh", "silu", "tanh"):
        namespace["check"](SimpleNamespace(scoring_func=name))
    # softmax: no ACT2FN key; relu2: zero over a range (0 / 0 where HF's weights are zero)
    for name in ("softmax", "relu2"):
        with pytest.raises(NotImplementedError) as err:
            namespace["check"](SimpleNamespace(scoring_func=name))
        line = str(err.value)
        assert "\n" not in line and f"scoring_func={name!r}" in line and "sqrtsoftplus" in line


def _moe_route_package():
    """qwen3_moe's MoE given a sigmoid `route` that renormalises by the bare sum."""
    from codegen.transforms.moe_router import SetMoeRouter

    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    SetMoeRouter().apply(package, router="sigmoid_topk", correction_bias=True)
    return package


def test_the_analysed_epsilon_joins_the_renormalisation_and_admits_relu_scores():
    """Given the constant HF adds to the renormalising sum, the route adds it too and the
    table holds the activations zero over a range of logits (relu, relu2, relu6), which
    `from_hf_config` then accepts; without it the route and the table are as before."""
    from codegen.transforms.score_switch import ZERO_SCORES

    without = _moe_route_package()
    ScoreSwitch().apply(without, field="scoring_func")
    route = _method(without, "MoE", "route")
    assert "weights / weights.sum(dim=-1, keepdim=True)" in route
    assert '"relu2"' not in without.render()["model.py"]

    package = _moe_route_package()
    ScoreSwitch().apply(package, field="scoring_func", eps=1e-20)
    route = _method(package, "MoE", "route")
    assert "weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)" in route
    files = package.render()
    for name, code in ZERO_SCORES.items():
        assert f'    "{name}": lambda x: {code},' in files["model.py"]
        assert repr(name) in files["args.py"].split("score_functions = ")[1]


def test_a_constant_already_added_becomes_the_analysed_one():
    # deepseek_v3's Gate adds 1e-20 already; an analysed 1e-6 replaces it
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    ScoreSwitch().apply(package, field="scoring_func", eps=1e-06)
    forward = _method(package, "Gate", "forward")
    assert "weights / (weights.sum(dim=-1, keepdim=True) + 1e-06)" in forward
    assert "1e-20" not in forward


def test_a_table_routed_gate_admits_the_zero_scores_with_the_constant():
    """A TableGate's renormalisation adds the analysed constant like the Gate's, so the
    relu family joins the table there too; without the analysed constant (the reference's
    own 1e-20 is no evidence of HF's) it stays out."""
    from codegen.transforms.table_routing import TableRouting
    from codegen.transforms.test_table_routing import TABLE

    for eps in (None, 1e-20):
        package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
        TableRouting().apply(package, table=TABLE)
        ScoreSwitch().apply(package, field="scoring_func", eps=eps)
        forward = _method(package, "TableGate", "forward")
        assert "router_scores(logits, self.scoring_func)" in forward
        files = package.render()
        accepted = files["args.py"].split("score_functions = ")[1].split("\n")[0]
        assert "+ 1e-20)" in forward
        assert ("'relu2'" in accepted) == (eps is not None)
        assert ('"relu2"' in files["model.py"]) == (eps is not None)
