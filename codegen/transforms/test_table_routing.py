"""TableRouting: before/after on the deepseek_v3 reference: the MoE layers a config list
types as table-routed build a TableGate (the experts `tid2eid[tokens]`, weighted by their
renormalised, scaled scores), the token ids threaded from Model.forward through the block's
`ffn` to the MoE, the table's checkpoint key beside the gate's; and on qwen3_moe with a
scaled sigmoid router (DeepSeek-V4's plan), whose gate is a projection `MoE.route` reads."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import EditError, code_of
from codegen.transforms.table_routing import TableRouting

TABLE = {
    "layers": [0, 1, 2],
    "switch": "mlp_layer_types",
    "value": "hash_moe",
    "buffer": "tid2eid",
    "rows": "vocab_size",
    "cols": "num_experts_per_tok",
    "input": "input_ids",
    "activation": "sigmoid",
    "fp32": False,
    "scores_fp32": False,
    "renormalize": True,
    "eps": 1e-20,
    "scale": "routed_scaling_factor",
}


def _package():
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def _method(package, cls, name):
    return code_of(find_method(package.module("model.py"), cls, name))


def test_table_layers_route_by_token_id():
    package = _package()
    assert "tokens" not in _method(package, "MoE", "forward")
    TableRouting().apply(package, table=TABLE)
    gate = _method(package, "TableGate", "forward")
    for line in (
        "logits = F.linear(x.reshape(-1, x.shape[-1]), self.weight)",
        "scores = logits.sigmoid()",
        "indices = self.tid2eid[tokens.reshape(-1)]",
        "weights = scores.gather(1, indices)",
        "weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)",
        "return logits, weights * self.route_scale, indices",
    ):
        assert line in gate, line
    init = _method(package, "TableGate", "__init__")
    assert "torch.zeros(args.vocab_size, args.n_activated_experts, dtype=torch.long)" in init
    moe = _method(package, "MoE", "forward")
    assert "self.gate(x, tokens)" in moe and "self.gate(x)\n" in moe
    assert "TableGate(args) if by_table else Gate(args)" in _method(package, "MoE", "__init__")
    block = _method(package, "TransformerBlock", "__init__")
    assert "MoE(args, by_table=layer_id in args.table_layers)" in block
    forward = _method(package, "TransformerBlock", "forward")
    assert "return h + self.ffn(self.ffn_norm(h), tokens)" in forward
    ffn = _method(package, "TransformerBlock", "ffn")
    assert "return self.moe(x, tokens)" in ffn and "return self.feed_forward(x)" in ffn
    assert "layer(h, rope, tokens)" in _method(package, "Model", "forward")
    files = package.render()
    assert 'if kind == "hash_moe"' in files["args.py"]
    assert (
        '"model.layers.{}.mlp.gate.tid2eid": "layers.{}.moe.gate.tid2eid"'
        in files["state_dict_adapter.py"]
    )
    compile(files["model.py"], "model.py", "exec")


def test_fp32_logits_and_no_scale():
    package = _package()
    TableRouting().apply(package, table=TABLE | {"fp32": True, "scale": None})
    gate = _method(package, "TableGate", "forward")
    assert "F.linear(x.reshape(-1, x.shape[-1]).float(), self.weight.float())" in gate
    assert "return logits, weights, indices" in gate


@pytest.mark.parametrize(
    ("activation", "scores"),
    [
        ("sigmoid", "logits.float().sigmoid()"),
        ("sqrtsoftplus", "F.softplus(logits.float()).sqrt()"),
    ],
)
def test_half_logits_scored_in_fp32(activation, scores):
    """HF upcasts its bf16 logits for the activation: the scores are taken of them upcast."""
    package = _package()
    table = TABLE | {"activation": activation, "scores_fp32": True}
    TableRouting().apply(package, table=table)
    gate = _method(package, "TableGate", "forward")
    assert "logits = F.linear(x.reshape(-1, x.shape[-1]), self.weight)" in gate
    assert f"scores = {scores}" in gate


def test_an_unknown_activation_is_refused():
    with pytest.raises(EditError):
        TableRouting().apply(_package(), table=TABLE | {"activation": "tanh"})


def _routed_package():
    """qwen3_moe with a sigmoid top-k router scaled by `routed_scaling` (the form DeepSeek-V4
    is planned on): the gate is a projection whose logits `MoE.route` turns into weights."""
    from codegen.transforms.moe_router import SetMoeRouter
    from codegen.transforms.routed_scaling import SetRoutedScaling

    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    SetMoeRouter().apply(
        package, router="sigmoid_topk", score_func="sigmoid", correction_bias=True, bias_on="scores"
    )
    SetRoutedScaling().apply(package)
    return package


def test_a_routed_projection_gate_is_kept_on_top_k_layers():
    package = _routed_package()
    assert "self.routed_scaling = args.routed_scaling" in _method(package, "MoE", "__init__")
    TableRouting().apply(package, table=TABLE)
    gate = _method(package, "TableGate", "forward")
    # the scale is the field that reads routed_scaling_factor here (set_routed_scaling's)
    assert "return logits, weights * self.routed_scaling, indices" in gate
    gate_init = _method(package, "TableGate", "__init__")
    assert "self.routed_scaling = args.routed_scaling" in gate_init
    # one row per expert, as the MoE builds its experts (qwen3_moe's `num_experts`)
    assert "torch.empty(args.num_experts, args.dim)" in gate_init
    init = _method(package, "MoE", "__init__")
    assert (
        "self.gate = TableGate(args) if by_table else nn.Linear(args.dim, args.num_experts,"
        " bias=False)"
    ) in init
    # the top-k router's correction bias (read by `route`) is no tensor of a table layer
    assert "if not by_table:\n        # added to the scores" in init
    moe = _method(package, "MoE", "forward")
    assert "if self.by_table:\n        _, weights, indices = self.gate(x, tokens)" in moe
    assert "weights, indices = self.route(self.gate(x))" in moe
    # the block keeps one `h + sublayer(...)` for the FFN (hyper connections rewrite it)
    forward = _method(package, "TransformerBlock", "forward")
    assert "return h + self.ffn(self.ffn_norm(h), tokens)" in forward
    files = package.render()
    assert (
        '"model.layers.{}.mlp.gate.tid2eid": "layers.{}.moe.gate.tid2eid"'
        in files["state_dict_adapter.py"]
    )
    compile(files["model.py"], "model.py", "exec")
