"""DropMoe: before/after on the deepseek_v3 reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_moe import DropMoe
from codegen.transforms.edits import EditError


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def test_deepseek_v3_becomes_dense_on_every_layer():
    before = _package("deepseek_v3").render()
    assert "self.is_moe = layer_id >= args.n_dense_layers" in before["model.py"]
    assert "class MoE(" in before["model.py"] and "class Gate(" in before["model.py"]
    package = _package("deepseek_v3")
    DropMoe().apply(package)
    files = package.render()
    model = files["model.py"]
    assert "is_moe" not in model and "self.moe" not in model
    assert "class MoE(" not in model and "class Gate(" not in model
    assert "class FeedForward(" in model  # the dense SwiGLU stays
    assert "self.feed_forward = FeedForward(args.dim, args.hidden_dim)" in model
    assert "ffn = self.feed_forward" in model
    adapter = files["state_dict_adapter.py"]
    assert ".moe." not in adapter and "layers.{}.feed_forward.w1.weight" in adapter
    checks = files["args.py"].split("def _check_supported", 1)[1]
    # the refusals of MoE-only fields go (a dense config has none of them), the rest stay
    for gone in ("n_routed_experts", "n_group", "topk_group", "num_experts_per_tok"):
        assert gone not in checks
    assert "experts % groups" not in checks
    assert "hidden_act" in checks and "partial_rotary_factor" in checks


def test_a_package_without_a_moe_choice_is_an_error():
    with pytest.raises(EditError):
        DropMoe().apply(_package("llama"))
