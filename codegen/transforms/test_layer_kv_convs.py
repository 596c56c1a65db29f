"""LayerKvConvs: before/after on the qwen3 reference with residual key/value filters and
full layers of their own class (as Inkling-2's attention is when the rule runs), and the
generated `DynamicConv` against transformers' Inkling2DynamicShortConvolution."""

from __future__ import annotations

import ast
import importlib
import sys

import pytest
import torch

from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.kv_convs import KvConvs
from codegen.transforms.layer_kv_convs import LayerKvConvs
from codegen.transforms.log_scaled_layers import LogScaledLayers
from codegen.transforms.test_kv_convs import CONVS
from codegen.transforms.test_log_scaled_layers import FOUND, _before

DYNAMIC = {
    "convs": (("k_sconv", "k_proj"), ("v_sconv", "v_proj")),
    "static": "static_weight",
    "proj": "weight_proj",
    "layout": "kernel_channels",
    "kernel": 4,
    "kernel_field": "conv_kernel_size",
    "groups": 2,
    "divisor": "math.sqrt(2 * kernel + 1)",
    "fp32": True,
}


def _package(convs=DYNAMIC) -> SourcePackage:
    package = _before()
    KvConvs().apply(package, convs={**CONVS, "divisor": "math.sqrt(kernel + 1)"})
    LogScaledLayers().apply(package, log_scaling=FOUND)
    LayerKvConvs().apply(package, convs=convs)
    return package


def _method(code: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(code)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_the_full_layers_filter_with_token_taps_of_the_projections_input():
    before = _before()
    KvConvs().apply(before, convs={**CONVS, "divisor": "math.sqrt(kernel + 1)"})
    LogScaledLayers().apply(before, log_scaling=FOUND)
    assert "DynamicConv" not in before.render()["model.py"]
    files = _package().render()
    model = files["model.py"]
    init = _method(model, "LogScaledAttention", "__init__")
    assert (
        "self.k_conv = DynamicConv(self.wk.out_features, self.wk.in_features, self.n_kv_heads,"
        " args.conv_kernel)" in init
    )
    forward = "\n".join(_method(model, "LogScaledAttention", "forward"))
    assert "self.k_conv(self.wk(x), x)" in forward and "self.v_conv(self.wv(x), x)" in forward
    # the sliding layers keep their residual filters
    assert "self.k_conv = CausalConv(self.wk.out_features, args.conv_kernel)" in _method(
        model, "Attention", "__init__"
    )
    assert "self.k_conv(self.wk(x))" in "\n".join(_method(model, "Attention", "forward"))
    adapter = files["state_dict_adapter.py"]
    prefix = "model.layers.{}.self_attn"
    for hf, house in (("k_sconv", "k_conv"), ("v_sconv", "v_conv")):
        assert f'"{prefix}.{hf}.static_weight": "layers.{{}}.attention.{house}.weight"' in adapter
        assert (
            f'"{prefix}.{hf}.weight_proj.weight": "layers.{{}}.attention.{house}.tap_proj.weight"'
            in adapter
        )
    assert f'transposed = frozenset({{"{prefix}.k_sconv.static_weight",' in adapter


@pytest.mark.parametrize(
    "change",
    [{"layout": "channels_kernel"}, {"fp32": False}, {"divisor": None}],
)
def test_other_filters_fail_loudly(change):
    with pytest.raises(EditError):
        _package({**DYNAMIC, **change})


def test_the_module_is_inkling2s_dynamic_short_convolution(tmp_path):
    """Fed the weights of transformers' Inkling2DynamicShortConvolution (its fixed taps
    transposed, as the adapter loads them), DynamicConv gives its output in fp32 and bf16."""
    inkling2 = pytest.importorskip("transformers.models.inkling2.modeling_inkling2")
    tree = ast.parse(_package().render()["model.py"])
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DynamicConv"]
    path = tmp_path / "dynamic_conv.py"
    header = "import math\n\nimport torch\nimport torch.nn.functional as F\n"
    header += "from torch import nn\n\n"
    path.write_text(header + ast.unparse(node))
    sys.path.insert(0, str(tmp_path))
    try:
        DynamicConv = importlib.import_module("dynamic_conv").DynamicConv
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("dynamic_conv", None)
    torch.manual_seed(0)
    theirs = inkling2.Inkling2DynamicShortConvolution(24, 16, 3, 4, layer_idx=0, conv_idx=0)
    torch.nn.init.normal_(theirs.static_weight)
    ours = DynamicConv(24, 16, 3, 4)
    ours.weight.data.copy_(theirs.static_weight.data.T)
    ours.tap_proj.weight.data.copy_(theirs.weight_proj.weight.data)
    x, source = torch.randn(2, 9, 24), torch.randn(2, 9, 16)
    torch.testing.assert_close(ours(x, source), theirs(x, source), rtol=0, atol=0)
    ours, theirs = ours.bfloat16(), theirs.bfloat16()
    got, want = ours(x.bfloat16(), source.bfloat16()), theirs(x.bfloat16(), source.bfloat16())
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, rtol=0, atol=0)
