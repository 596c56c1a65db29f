"""AddMoe: before/after on the real llama and qwen3 references."""

from __future__ import annotations

import types

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe, dense_rule_of, norm_topk_of
from codegen.transforms.edits import EditError


def reference(name: str = "llama") -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / name)


def apply(name: str = "llama", **params) -> dict[str, str]:
    package = reference(name)
    AddMoe().apply(package, **params)
    return package.render()


def test_all_layers_replace_the_dense_feed_forward():
    files = apply(dense_rule="all", norm_topk_prob="always")
    model = files["model.py"]
    assert "class FeedForward" not in model and "feed_forward" not in model
    assert "class MoE(nn.Module):" in model
    # the experts are the one shared implementation, imported (vendored by scaffold)
    assert "from codegen.layers.experts import Experts" in model and "class Experts" not in model
    assert "        self.moe = MoE(args)\n" in model
    assert "return h + self.moe(self.ffn_norm(h))" in model
    # mixtral: renormalised unconditionally, no switch
    assert "        weights = weights / weights.sum(dim=-1, keepdim=True)\n" in model
    assert "norm_topk_prob" not in model + files["args.py"]
    # llama blocks keep their signature: nothing reads a layer index
    assert "TransformerBlock(args) for _ in range(args.n_layers)" in model
    adapter = files["state_dict_adapter.py"]
    assert "feed_forward" not in adapter
    assert (
        '"model.layers.{}.mlp.experts.{}.gate_proj.weight": "layers.{}.moe.experts.w1",' in adapter
    )
    assert '"model.layers.{}.mlp.gate.weight": "layers.{}.moe.gate.weight",' in adapter


def test_sparse_step_keeps_dense_layers_and_gives_blocks_their_index():
    files = apply(dense_rule="sparse_step", norm_topk_prob="config")
    model, args = files["model.py"], files["args.py"]
    assert "def __init__(self, args: ModelArgs, layer_id: int):" in model
    assert "TransformerBlock(args, i) for i in range(args.n_layers)" in model
    assert (
        "        self.is_moe = args.is_moe_layer(layer_id)\n"
        "        if self.is_moe:\n"
        "            self.moe = MoE(args)\n"
        "        else:\n"
        "            self.feed_forward = FeedForward("
        "args.dim, args.hidden_dim, bias=args.mlp_bias)\n"
    ) in model
    assert (
        "        ffn = self.moe if self.is_moe else self.feed_forward\n"
        "        return h + ffn(self.ffn_norm(h))\n"
    ) in model
    assert "        if self.norm_topk_prob:\n            weights = weights / " in model
    assert "    def is_moe_layer(self, layer_id: int) -> bool:" in args
    for kwarg in (
        "num_experts=hf_config.num_experts,",
        "top_k=hf_config.num_experts_per_tok,",
        "moe_hidden_dim=hf_config.moe_intermediate_size,",
        "norm_topk_prob=hf_config.norm_topk_prob,",
        "decoder_sparse_step=hf_config.decoder_sparse_step,",
        "mlp_only_layers=tuple(hf_config.mlp_only_layers or ()),",
    ):
        assert kwarg in args
    assert "    # mixture of experts\n    num_experts: int = 8" in args
    adapter = files["state_dict_adapter.py"]
    dense = adapter.index('"layers.{}.feed_forward.w2.weight"')
    assert dense < adapter.index('"layers.{}.moe.gate.weight"')  # MoE rows after the dense ones


def test_first_k_and_never_renormalise():
    files = apply("qwen3", dense_rule="first_k", norm_topk_prob="never")
    model = files["model.py"]
    assert "self.is_moe = layer_id >= args.n_dense_layers" in model
    assert "weights.sum" not in model
    assert "n_dense_layers=hf_config.first_k_dense_replace," in files["args.py"]


def test_refuses_a_package_that_already_has_moe_and_bad_parameters():
    with pytest.raises(EditError):
        apply("qwen3_moe")
    with pytest.raises(ValueError, match="dense_rule"):
        apply(dense_rule="every_other")
    with pytest.raises(ValueError, match="norm_topk_prob"):
        apply(norm_topk_prob="sometimes")


def _features(model_type, dense_rule, norm_topk_prob):
    moe = types.SimpleNamespace(dense_rule=dense_rule, norm_topk_prob=norm_topk_prob)
    values = {"moe.layer_condition": dense_rule, "moe.norm_topk_prob": norm_topk_prob}
    source = types.SimpleNamespace(configuration=_configuration(model_type), config_class=None)
    return types.SimpleNamespace(model_type=model_type, moe=moe, get=values.get, source=source)


def _configuration(model_type: str) -> str:
    """The installed transformers' configuration file of `model_type` (read statically)."""
    from codegen.analyze.locate import model_type_files

    return model_type_files(model_type)[1]


QWEN_CONDITION = (
    "(layer_idx not in config.mlp_only_layers) and "
    "( config.num_experts > 0 and (layer_idx + 1) % config.decoder_sparse_step == 0 )"
)


@pytest.mark.parametrize(
    "model_type, condition, norm, expected",
    [
        ("qwen3_moe", QWEN_CONDITION, False, "sparse_step"),
        ("glm4_moe", "layer_idx >= config.first_k_dense_replace", True, "first_k"),
        ("mixtral", None, True, "all"),
        # any other condition is evaluated as written
        ("exaone_moe", 'config.mlp_layer_types[layer_idx] == "sparse"', True, "condition"),
        ("glm4_moe", "layer_idx >= config.first_k_dense_replace + 1", True, "condition"),
    ],
)
def test_auto_parameters_from_features(model_type, condition, norm, expected):
    features = _features(model_type, condition, norm)
    assert dense_rule_of(features) == expected
    # qwen3_moe / glm4_moe configs have a norm_topk_prob switch; mixtral always renormalises
    assert norm_topk_of(features) == ("always" if model_type == "mixtral" else "config")


def test_condition_rule_is_read_from_features():
    condition = 'config.mlp_layer_types[layer_idx] == "sparse"'
    features = _features("exaone_moe", condition, True)
    package = reference()
    AddMoe().apply(package, features, dense_rule="auto", norm_topk_prob="config")
    args = package.render()["args.py"]
    assert 'return self.mlp_layer_types[layer_id] == "sparse"' in args


def test_softmax_over_the_selected_logits_renormalises_whatever_the_flag():
    """cohere2_moe's config declares norm_topk_prob, but its softmax branch scores the k
    selected logits: renormalised by construction, so the package must not read the flag."""
    features = _features("cohere2_moe", None, True)
    assert norm_topk_of(features) == "config"  # without the finding the declared flag wins
    values = {"moe.layer_condition": None, "moe.norm_topk_prob": True}
    values["moe.norm_topk_by"] = "softmax"
    features.get = values.get
    assert norm_topk_of(features) == "selected"
    package = reference()
    AddMoe().apply(package, features, dense_rule="auto", norm_topk_prob="auto")
    files = package.render()
    assert "norm_topk_prob" not in files["model.py"] + files["args.py"]
    # HF's order: pick the k largest logits, then softmax over those k
    route = files["model.py"].split("def route", 1)[1].split("def forward", 1)[0]
    assert route.index("weights, indices = logits.topk(self.top_k, dim=-1)") < route.index(
        "weights = F.softmax(weights, dim=-1, dtype=torch.float32)"
    )
    assert "probs" not in route and "weights.sum" not in route
