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
