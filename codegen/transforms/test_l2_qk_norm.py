"""L2QkNorm: before/after on the llama reference, and the generated `rescale` with the key
scale against transformers' zaya q/k norm."""

from __future__ import annotations

import ast

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.l2_qk_norm import L2QkNorm

NORM = {"module": "qk_norm", "key_scale": "temp", "scale": "head_dim"}


def _package(norm=NORM) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    L2QkNorm().apply(package, norm=norm)
    return package


def _method(code: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(code)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_queries_and_keys_rescaled_before_rope_keys_scaled_per_kv_head():
    before = SourcePackage.from_directory(references_dir() / "llama").render()["model.py"]
    assert "rescale" not in before and "key_scale" not in before
    files = _package().render()
    init = _method(files["model.py"], "Attention", "__init__")
    assert "self.key_scale = nn.Parameter(torch.zeros(args.n_kv_heads))" in init
    forward = _method(files["model.py"], "Attention", "forward")
    at = next(i for i, s in enumerate(forward) if "apply_rotary" in s)
    assert forward[at - 2 : at] == [
        "q = rescale(q, self.head_dim ** 0.5)",
        "k = rescale(k, self.head_dim ** 0.5) * self.key_scale[:, None, None]",
    ]
    assert _method(files["model.py"], "Attention", "init_parameters") == [
        "nn.init.zeros_(self.key_scale)"
    ]
    row = '"model.layers.{}.self_attn.qk_norm.temp": "layers.{}.attention.key_scale"'
    assert row in files["state_dict_adapter.py"]


def test_a_norm_of_its_own_is_written_as_the_number():
    forward = _method(_package({**NORM, "scale": 2.5}).render()["model.py"], "Attention", "forward")
    assert "q = rescale(q, 2.5)" in forward


def test_an_incomplete_fact_fails_loudly():
    with pytest.raises(EditError, match="key scale"):
        _package({"module": "qk_norm", "scale": "head_dim"})


def test_rescale_is_hfs_norm():
    """The generated `rescale` and key scale, on (batch, heads, seq, dim) queries and keys,
    give transformers' ZayaQKNorm on (batch, seq, heads, dim) ones, in fp32 and bf16."""
    zaya = pytest.importorskip("transformers.models.zaya.modeling_zaya")
    from transformers import ZayaConfig

    config = ZayaConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    hf = zaya.ZayaQKNorm(config)
    torch.manual_seed(0)
    torch.nn.init.normal_(hf.temp)
    code = _package().render()["model.py"]
    (node,) = [n for n in ast.parse(code).body if getattr(n, "name", "") == "rescale"]
    scope = {"torch": torch}
    exec(compile(ast.Module([node], []), "rescale", "exec"), scope)
    rescale = scope["rescale"]
    for dtype in (torch.float32, torch.bfloat16):
        q, k = torch.randn(2, 5, 4, 16, dtype=dtype), torch.randn(2, 5, 2, 16, dtype=dtype)
        with torch.no_grad():
            want_q, want_k = hf.to(dtype)(q, k)
            got_q = rescale(q.transpose(1, 2), 16**0.5).transpose(1, 2)
            scale = hf.temp[:, None, None]
            got_k = (rescale(k.transpose(1, 2), 16**0.5) * scale).transpose(1, 2)
        torch.testing.assert_close(got_q, want_q, rtol=0, atol=0)
        torch.testing.assert_close(got_k, want_k, rtol=0, atol=0)
