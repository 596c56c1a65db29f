"""ShortConvLayers: before/after on the qwen3 and llama references, and the mixer's maths."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.short_conv_layers import ShortConvLayers

FOUND = {
    "field": "layer_types",
    "layer_type": "conv",
    "module": "conv",
    "in_proj": "in_proj",
    "conv": "conv",
    "out_proj": "out_proj",
    "parts": 3,
    "post_gate": 1,
    "kernel": 3,
    "kernel_field": "conv_L_cache",
    "bias": False,
    "bias_field": "conv_bias",
}


def _reference(name: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / name)


def test_before_every_layer_attends():
    files = _reference("qwen3").render()
    assert "ShortConv" not in files["model.py"]
    assert "self.attention = Attention(args)" in files["model.py"]
    assert '"conv"' not in files["args.py"]


def test_after_the_marked_layers_build_a_short_conv_instead_of_attention():
    package = _reference("qwen3")
    ShortConvLayers().apply(package, short_conv=FOUND)
    files = package.render()
    model = files["model.py"]
    assert "class ShortConv(nn.Module):" in model
    assert 'self.short_conv = args.layer_types[layer_id] == "conv"' in model
    assert "self.conv = ShortConv(args)" in model
    assert "else:\n            self.attention = Attention(args)" in model
    assert "self.conv(self.attention_norm(x))" in model
    assert "if self.short_conv" in model
    assert "b, c, x = self.in_proj(x).chunk(3, dim=-1)" in model
    args = files["args.py"]
    assert 'LAYER_TYPES = ("full_attention", "sliding_attention", "conv")' in args
    assert "conv_kernel=hf_config.conv_L_cache" in args
    assert "conv_bias=hf_config.conv_bias" in args
    adapter = files["state_dict_adapter.py"]
    for hf in ("in_proj", "conv", "out_proj"):
        for tensor in ("weight", "bias"):
            row = f'"model.layers.{{}}.conv.{hf}.{tensor}": "layers.{{}}.conv.{hf}.{tensor}"'
            assert row in adapter


def test_renamed_modules_and_a_reference_without_layer_types():
    package = _reference("llama")
    renamed = {
        **FOUND,
        "layer_type": "short",
        "module": "mixer",
        "in_proj": "proj_in",
        "conv": "filter",
        "out_proj": "proj_out",
        "post_gate": 0,
        "bias_field": None,
        "kernel_field": None,
    }
    ShortConvLayers().apply(package, short_conv=renamed)
    files = package.render()
    args = files["args.py"]
    assert 'LAYER_TYPES = ("full_attention", "short")' in args
    assert "layer_types=tuple(hf_config.layer_types)" in args
    assert "conv_kernel=3" in args and "conv_bias=False" in args
    assert "c, b, x = self.in_proj(x).chunk(3, dim=-1)" in files["model.py"]
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.mixer.filter.weight": "layers.{}.conv.conv.weight"' in adapter
    assert "proj_in.bias" not in adapter  # no bias switch, none built


def test_a_malformed_finding_is_refused():
    package = _reference("qwen3")
    with pytest.raises(EditError):
        ShortConvLayers().apply(package, short_conv={**FOUND, "parts": 2})


def _short_conv_class(post_gate: int = 1):
    package = _reference("qwen3")
    ShortConvLayers().apply(package, short_conv={**FOUND, "post_gate": post_gate})
    code = package.render()["model.py"]
    start = code.index("class ShortConv(nn.Module):")
    end = code.index("class TransformerBlock")
    scope = {"torch": torch, "nn": nn, "F": F, "ModelArgs": object}
    exec(code[start:end], scope)
    return scope["ShortConv"]


def _by_hand(module, x: torch.Tensor) -> torch.Tensor:
    """out_proj(c * y), y[t] = bias + sum_j w[j] * (b * x)[t - K + 1 + j] (zeros before 0)."""
    b, c, h = module.in_proj(x).chunk(3, dim=-1)
    u = b * h
    weight = module.conv.weight[:, 0]  # (channels, K)
    taps = weight.shape[-1]
    y = torch.zeros_like(u)
    for t in range(u.shape[1]):
        for j in range(taps):
            s = t - taps + 1 + j
            if s >= 0:
                y[:, t] += weight[:, j] * u[:, s]
    if module.conv.bias is not None:
        y = y + module.conv.bias
    return module.out_proj(c * y)


def test_the_mixer_is_a_causal_depthwise_filter_that_starts_from_zeros():
    cls = _short_conv_class()
    torch.manual_seed(0)
    module = cls(SimpleNamespace(dim=6, conv_kernel=3, conv_bias=True))
    for param in module.parameters():
        nn.init.normal_(param)
    x = torch.randn(2, 7, 6)
    with torch.no_grad():
        got = module(x)
        torch.testing.assert_close(got, _by_hand(module, x), rtol=1e-5, atol=1e-5)
        later = x.clone()
        later[:, 4:] = torch.randn(2, 3, 6)  # the future changes, the past does not
        torch.testing.assert_close(module(later)[:, :4], got[:, :4])
        # a document alone equals its tokens at the start of a longer row: no earlier state
        torch.testing.assert_close(module(x[:, :3]), got[:, :3])


class _Found(dict):
    """The few Features reads align_hf_keys makes."""

    def get(self, key, default=None):
        return super().get(key, default)


def test_align_hf_keys_keeps_the_mixer_rows_a_toy_without_conv_layers_lacks():
    from codegen.transforms.align_hf_keys import AlignHfKeys

    attention = ["q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"]
    layer_keys = [f"self_attn.{name}.weight" for name in attention] + [
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
    ]
    other = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    kept = {}
    for found in (_Found({"block.short_conv": FOUND}), _Found()):
        package = _reference("qwen3")
        ShortConvLayers().apply(package, short_conv=FOUND)
        AlignHfKeys().apply(
            package, found, prefix="model.layers", layer_keys=layer_keys, other_keys=other
        )
        kept[bool(found)] = package.render()["state_dict_adapter.py"]
    row = '"model.layers.{}.conv.in_proj.weight": "layers.{}.conv.in_proj.weight"'
    assert row in kept[True]
    assert row not in kept[False]  # without the finding the row looks dead for this toy


def test_a_post_normed_mixer_takes_the_choice_without_extra_parentheses():
    """Sandwich norms wrap the mixer's call: the conditional is the norm's argument as it
    is (ruff UP034 flags `norm((a if c else b))`); a bare sum keeps its parentheses."""
    from codegen.transforms.norm_placement import SetNormPlacement

    package = _reference("qwen3")
    SetNormPlacement().apply(package, placement="sandwich")
    ShortConvLayers().apply(package, short_conv=FOUND)
    model = package.render()["model.py"]
    assert "self.post_attention_norm(self.conv(self.attention_norm(x)) if self.short_conv" in model
    assert "post_attention_norm((" not in model

    bare = _reference("qwen3")
    ShortConvLayers().apply(bare, short_conv=FOUND)
    assert "x + (self.conv(self.attention_norm(x)) if self.short_conv" in bare.render()["model.py"]
