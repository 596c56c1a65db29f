"""SetFeedForwardBias: llama's config-switched FeedForward bias becomes a fixed setting."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.ffn_bias import SetFeedForwardBias


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


@pytest.mark.parametrize("enabled", [True, False])
def test_the_switched_bias_becomes_the_fixed_setting(enabled):
    before = _llama().render()["model.py"]
    assert "bias: bool = False" in before and "bias=args.mlp_bias" in before
    package = _llama()
    SetFeedForwardBias().apply(package, enabled=enabled)
    files = package.render()
    model = files["model.py"]
    assert "def __init__(self, dim: int, hidden_dim: int):\n" in model
    assert f"self.w1 = nn.Linear(dim, hidden_dim, bias={enabled})" in model
    assert "self.feed_forward = FeedForward(args.dim, args.hidden_dim)\n" in model
    row = '"model.layers.{}.mlp.down_proj.bias": "layers.{}.feed_forward.w2.bias"'
    assert (row in files["state_dict_adapter.py"]) is enabled
    compile(model, "model.py", "exec")


def test_a_fixed_bias_keeps_other_calls_alone():
    package = _llama()
    SetFeedForwardBias().apply(package, enabled=False)
    model = package.render()["model.py"]
    assert "nn.Linear(args.dim, args.vocab_size, bias=False)" in model
    assert "bias=args.attention_bias" in model


def _qwen3() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "qwen3")


def test_a_fixed_bias_becomes_the_targets_switch():
    """qwen3 fixes the biases (off); doge switches them on `mlp_bias`."""
    before = _qwen3().render()
    assert "mlp_bias" not in before["args.py"]
    assert "self.w1 = nn.Linear(dim, hidden_dim, bias=False)" in before["model.py"]
    package = _qwen3()
    SetFeedForwardBias().apply(package, enabled="mlp_bias")
    files = package.render()
    model = files["model.py"]
    assert "def __init__(self, dim: int, hidden_dim: int, bias: bool = False):\n" in model
    for line in ("w1 = nn.Linear(dim, hidden_dim", "w2 = nn.Linear(hidden_dim, dim"):
        assert f"self.{line}, bias=bias)" in model
    assert "self.feed_forward = FeedForward(args.dim, args.hidden_dim, bias=args.mlp_bias)" in model
    assert "mlp_bias: bool = False" in files["args.py"]
    assert "mlp_bias=hf_config.mlp_bias" in files["args.py"]
    row = '"model.layers.{}.mlp.up_proj.bias": "layers.{}.feed_forward.w3.bias"'
    assert row in files["state_dict_adapter.py"]
    compile(model, "model.py", "exec")


def test_a_switched_bias_reads_the_targets_field():
    """llama's `mlp_bias` re-pointed to a target's own field: the calls pass that field."""
    package = _llama()
    SetFeedForwardBias().apply(package, enabled="use_mlp_bias")
    files = package.render()
    model = files["model.py"]
    assert "self.feed_forward = FeedForward(args.dim, args.hidden_dim, bias=args.use_mlp_bias)" in (
        model
    )
    assert model.count("bias: bool = False") == 1
    assert "use_mlp_bias=hf_config.use_mlp_bias" in files["args.py"]


def test_every_feed_forward_instance_gets_its_bias_rows():
    """DeepSeek's shared expert is a FeedForward too: built with the bias, its rows follow."""
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    before = package.render()["state_dict_adapter.py"]
    assert "shared_experts.w2.bias" not in before
    SetFeedForwardBias().apply(package, enabled="mlp_bias")
    files = package.render()
    assert "n_shared_experts * args.moe_hidden_dim, bias=args.mlp_bias)" in files["model.py"]
    hf, house = "model.layers.{}.mlp.shared_experts", "layers.{}.moe.shared_experts"
    assert f'"{hf}.down_proj.bias": "{house}.w2.bias"' in files["state_dict_adapter.py"]
