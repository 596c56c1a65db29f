"""ShortcutSublayers: before/after on the deepseek_v3 reference, and the wiring of a built layer."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.shortcut_sublayers import ShortcutSublayers

SUBLAYERS = {
    "count": 2,
    "moe": "mlp",
    "moe_input": 0,
    "names": {
        "attention": "self_attn",
        "feed_forward": "mlps",
        "attention_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    },
}


def _package() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def _block(files: dict[str, str]) -> str:
    return files["model.py"].split("class TransformerBlock(", 1)[1].split("\nclass ", 1)[0]


def test_the_block_lists_its_parts_and_adds_the_shortcut_last():
    before = _block(_package().render())
    assert "self.is_moe" in before and "nn.ModuleList" not in before
    package = _package()
    ShortcutSublayers().apply(package, sublayers=SUBLAYERS)
    files = package.render()
    block = _block(files)
    for line in (
        "self.attention_norm = nn.ModuleList(RMSNorm(args.dim, args.norm_eps) for _ in range(2))",
        "self.attention = nn.ModuleList(Attention(args) for _ in range(2))",
        "self.ffn_norm = nn.ModuleList(RMSNorm(args.dim, args.norm_eps) for _ in range(2))",
        "self.moe = MoE(args)",
        "h = x + self.attention[0](self.attention_norm[0](x), rope)",
        "normed = self.ffn_norm[0](h)",
        "shortcut = self.moe(normed)",
        "h = h + self.feed_forward[0](normed)",
        "h = h + self.attention[1](self.attention_norm[1](h), rope)",
        "return h + self.feed_forward[1](self.ffn_norm[1](h)) + shortcut",
    ):
        assert line in block, line
    assert "is_moe" not in block and "n_dense_layers" not in block
    assert "2 attention sublayers, each followed by its own dense feed-forward" in block
    args = files["args.py"]
    assert "# feed-forward: each of a layer's 2 sublayers has a dense SwiGLU" in args
    assert "first n_dense_layers are dense" not in args
    # the adapter: the listed parts get the list index, under the checkpoint's list names
    adapter = files["state_dict_adapter.py"]
    for hf, house in (
        ("model.layers.{}.self_attn.{}.q_a_proj.weight", "layers.{}.attention.{}.wq_a.weight"),
        ("model.layers.{}.mlps.{}.gate_proj.weight", "layers.{}.feed_forward.{}.w1.weight"),
        ("model.layers.{}.input_layernorm.{}.weight", "layers.{}.attention_norm.{}.weight"),
        (
            "model.layers.{}.post_attention_layernorm.{}.weight",
            "layers.{}.ffn_norm.{}.weight",
        ),
    ):
        assert f'"{hf}"' in adapter and f'"{house}"' in adapter
    # the MoE's rows are the layer's own, unlisted
    assert (
        '"model.layers.{}.mlp.experts.{}.gate_proj.weight": "layers.{}.moe.experts.w1"' in adapter
    )
    assert '"model.layers.{}.self_attn.q_a_proj.weight"' not in adapter


def test_the_moe_may_read_a_later_sublayer():
    package = _package()
    ShortcutSublayers().apply(package, sublayers={**SUBLAYERS, "count": 3, "moe_input": 1})
    block = _block(package.render())
    assert "self.attention = nn.ModuleList(Attention(args) for _ in range(3))" in block
    assert "h = h + self.feed_forward[0](self.ffn_norm[0](h))" in block
    assert "normed = self.ffn_norm[1](h)" in block
    assert "return h + self.feed_forward[2](self.ffn_norm[2](h)) + shortcut" in block
    with pytest.raises(EditError):
        ShortcutSublayers().apply(_package(), sublayers={**SUBLAYERS, "moe_input": 2})


def test_a_built_layer_runs_its_sublayers_in_turn(tmp_path):
    package = _package()
    ShortcutSublayers().apply(package, sublayers=SUBLAYERS)
    folder = tmp_path / "gen_shortcut_sublayers"
    folder.mkdir()
    for name, text in package.render().items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_shortcut_sublayers.args")
        model_module = importlib.import_module("gen_shortcut_sublayers.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(
        dim=16, n_layers=1, n_heads=2, vocab_size=32, q_lora_rank=8, kv_lora_rank=4,
        qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=4, hidden_dim=12,
        n_routed_experts=4, n_activated_experts=2, moe_hidden_dim=8, n_expert_groups=2,
        n_limited_groups=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = model_module.Model(args)
    model.init_weights()
    layer = model.layers[0]
    x = torch.randn(1, 5, 16)
    rope = model.rotary(torch.arange(5).unsqueeze(0))
    with torch.no_grad():
        h = x + layer.attention[0](layer.attention_norm[0](x), rope)
        shortcut = layer.moe(layer.ffn_norm[0](h))
        h = h + layer.feed_forward[0](layer.ffn_norm[0](h))
        h = h + layer.attention[1](layer.attention_norm[1](h), rope)
        expected = h + layer.feed_forward[1](layer.ffn_norm[1](h)) + shortcut
        torch.testing.assert_close(layer(x, rope), expected)
    assert layer.attention[0] is not layer.attention[1]
    assert not torch.equal(layer.attention[0].wo.weight, layer.attention[1].wo.weight)
