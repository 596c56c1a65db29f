"""ProductKeyExpertsSwitch: a bool switch puts product-key experts in the MLP's place."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.ffn_bias import SetFeedForwardBias
from codegen.transforms.product_key_experts import ProductKeyExpertsSwitch

KEYS = {
    "field": "is_moe",
    "router": "router_gate",
    "down": "down_embed",
    "up": "up_embed",
    "w1": "gate_proj",
    "w3": "up_proj",
    "w2": "down_proj",
    "experts": "num_experts",
    "top_k": "num_experts_per_tok",
    "renormalise": "norm_topk_prob",
}


def test_qwen3_block_chooses_the_experts_by_the_switch():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    ProductKeyExpertsSwitch().apply(package, keys=KEYS)
    files = package.render()
    model = files["model.py"]
    assert "class ProductKeyExperts(nn.Module):" in model
    assert (
        "ProductKeyExperts(args) if args.is_moe else FeedForward(args.dim, args.hidden_dim)"
        in model
    )
    assert "self.n_keys = isqrt(args.num_experts)" in model
    assert "from math import isqrt" in model
    assert "logits = self.router(x).view(2, tokens, -1)" in model
    assert "inner = F.silu(inner) * weights" in model
    assert "self.norm_topk_prob = args.norm_topk_prob" in model
    assert "weights = weights / weights.sum(dim=-1, keepdim=True)" in model
    compile(model, "model.py", "exec")
    args = files["args.py"]
    for kwarg in ("is_moe", "num_experts", "num_experts_per_tok", "norm_topk_prob"):
        assert f"{kwarg}=hf_config.{kwarg}," in args
    adapter = files["state_dict_adapter.py"]
    for hf, house in (
        ("router_gate", "router"),
        ("down_embed", "down_embed"),
        ("up_embed", "up_embed"),
    ):
        assert (
            f'"model.layers.{{}}.mlp.{hf}.weight": "layers.{{}}.feed_forward.{house}.weight"'
            in adapter
        )


def test_a_shared_expert_under_other_names_than_the_mlp_is_refused():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    with pytest.raises(EditError, match="shared expert"):
        ProductKeyExpertsSwitch().apply(package, keys={**KEYS, "w1": "shared_gate"})


def test_without_a_renormalising_flag_no_branch():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    ProductKeyExpertsSwitch().apply(package, keys={**KEYS, "renormalise": None})
    model = package.render()["model.py"]
    assert "norm_topk_prob" not in model and "weights.sum" not in model


@pytest.mark.parametrize(
    ("enabled", "bias", "dense"),
    [
        ("mlp_bias", "args.mlp_bias", "FeedForward(args.dim, args.hidden_dim, bias=args.mlp_bias)"),
        (True, "True", "FeedForward(args.dim, args.hidden_dim)"),
    ],
)
def test_the_shared_expert_has_the_mlps_biases(enabled, bias, dense):
    """The shared expert loads the MLP's checkpoint rows: biases included (doge's mlp_bias)."""
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    SetFeedForwardBias().apply(package, enabled=enabled)
    ProductKeyExpertsSwitch().apply(package, keys=KEYS)
    model = package.render()["model.py"]
    assert f"self.w2 = nn.Linear(args.hidden_dim, args.dim, bias={bias})" in model
    assert f"ProductKeyExperts(args) if args.is_moe else {dense}" in model
    assert "self.router = nn.Linear(args.dim, 2 * self.n_keys, bias=False)" in model
