"""ConvQkvProjection: before/after on the llama reference, and the generated attention's
queries, keys and values against transformers' zaya projection with the same weights."""

from __future__ import annotations

import ast
import importlib
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.conv_qkv_projection import ConvQkvProjection
from codegen.transforms.edits import EditError

CONV = {
    "module": "qkv_proj",
    "q": "q_proj",
    "k": "k_proj",
    "value": "v_proj_current",
    "delayed": "v_proj_delayed",
    "depthwise": "conv_qk_depthwise",
    "grouped": "conv_qk_grouped",
    "kernels": (3, 2),
    "kernel_fields": ("cca_time0", "cca_time1"),
    "conv_bias": True,
    "bias": False,
}


def _package(conv=CONV) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    ConvQkvProjection().apply(package, conv=conv)
    return package


def _method(code: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(code)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_values_halved_and_queries_keys_filtered():
    before = SourcePackage.from_directory(references_dir() / "llama").render()["model.py"]
    assert "QKConv" not in before and "wv_delayed" not in before
    files = _package().render()
    init = "\n".join(_method(files["model.py"], "Attention", "__init__"))
    assert "self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim // 2," in init
    assert "self.wv_delayed = nn.Linear(args.dim, args.n_kv_heads * args.head_dim // 2," in init
    assert "self.qk_conv = QKConv(" in init
    forward = "\n".join(_method(files["model.py"], "Attention", "forward"))
    assert "self.wv_delayed(F.pad(x, (0, 0, 1, -1)))" in forward
    assert "self.qk_conv(torch.cat([q, k], dim=-1))" in forward
    assert "qk_conv_kernels=(hf_config.cca_time0, hf_config.cca_time1)" in files["args.py"]
    adapter = files["state_dict_adapter.py"]
    prefix = "model.layers.{}.self_attn.qkv_proj"
    for hf, house in (
        ("v_proj_current.weight", "wv.weight"),
        ("v_proj_delayed.weight", "wv_delayed.weight"),
        ("conv_qk_depthwise.bias", "qk_conv.depthwise.bias"),
        ("conv_qk_grouped.weight", "qk_conv.grouped.weight"),
    ):
        assert f'"{prefix}.{hf}": "layers.{{}}.attention.{house}"' in adapter


def test_convolutions_without_bias_build_none():
    files = _package({**CONV, "conv_bias": False}).render()
    assert "groups=channels, bias=False)" in files["model.py"]
    assert "conv_qk_depthwise.bias" not in files["state_dict_adapter.py"]


def test_an_incomplete_fact_fails_loudly():
    with pytest.raises(EditError, match="delayed"):
        _package({k: v for k, v in CONV.items() if k != "delayed"})


def test_the_projection_is_hfs(tmp_path):
    """The generated QKConv and forward, given the weights of transformers' zaya projection,
    give its queries, keys and values (bias on everything, kernels 3 and 2)."""
    zaya = pytest.importorskip("transformers.models.zaya.modeling_zaya")
    from transformers import ZayaConfig

    config = ZayaConfig(
        hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        cca_time0=3, cca_time1=2, attention_bias=True, num_hidden_layers=1,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = zaya.ZayaCCAProjection(config, 0)
    for p in hf.parameters():
        torch.nn.init.normal_(p)
    model = _package({**CONV, "bias": True}).render()["model.py"]
    tree = ast.parse(model)
    keep = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in ("QKConv",)]
    path = tmp_path / "qk_conv.py"
    path.write_text(
        "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"
        + "\n\n".join(ast.unparse(n) for n in keep)
    )
    sys.path.insert(0, str(tmp_path))
    try:
        QKConv = importlib.import_module("qk_conv").QKConv
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("qk_conv", None)
    conv = QKConv(6 * 16, 16, (3, 2))
    conv.depthwise.load_state_dict(hf.conv_qk_depthwise.state_dict())
    conv.grouped.load_state_dict(hf.conv_qk_grouped.state_dict())
    x = torch.randn(2, 7, 48)
    with torch.no_grad():
        want = hf(x, None)
        q, k = hf.q_proj(x), hf.k_proj(x)
        mixed = 0.5 * (q.view(2, 7, 2, -1, 16) + k.view(2, 7, 2, 1, 16))
        qf, kf = conv(torch.cat([q, k], dim=-1)).split([q.shape[-1], k.shape[-1]], dim=-1)
        got_q = qf.view(2, 7, -1, 16) + mixed.flatten(2, 3)
        got_k = kf.view(2, 7, -1, 16) + mixed.mean(dim=3)
        delayed = hf.v_proj_delayed(torch.nn.functional.pad(x, (0, 0, 1, -1)))
        got_v = torch.cat([hf.v_proj_current(x), delayed], dim=-1).view(2, 7, -1, 16)
    for got, ref in zip((got_q, got_k, got_v), want, strict=True):
        torch.testing.assert_close(got, ref)
