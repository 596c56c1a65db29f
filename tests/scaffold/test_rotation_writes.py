"""The shared and the interleaved rotations: HF's results, writing no more than HF does.

Counted with a dispatch mode (bytes of every tensor an op makes): the shared rotation used
to write rotate_half's negated copy on top of HF's chunked products (gpt_oss 1.006x HF's
bytes); the interleaved one wrote four products, two sums and their join where HF
deepseek_v2 writes one complex product (deepseek_v2 1.026x).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from transformers.models.deepseek_v2.modeling_deepseek_v2 import apply_rotary_emb
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    apply_rotary_pos_emb_interleave,
)
from transformers.models.llama.modeling_llama import rotate_half

from codegen.layers.rope import apply_rotary
from codegen.models import references_dir


class Written(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        read = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in read:
                self.bytes += tensor.numel() * tensor.element_size()
        return out


def _tables(seq: int, dim: int):
    freqs = torch.arange(seq)[:, None] * (1.0 / 10000 ** (torch.arange(0, dim, 2) / dim))
    emb = torch.cat((freqs, freqs), dim=-1)[None]
    return emb.cos(), emb.sin()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rotary_dim", [16, 8])
def test_the_shared_rotation_is_hfs_bit_for_bit_and_writes_its_result_four_times(dtype, rotary_dim):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 16, dtype=dtype)
    cos, sin = (table.to(dtype) for table in _tables(7, rotary_dim))
    with Written() as written:
        out = apply_rotary(x, cos, sin)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    turned = x[..., :rotary_dim] * c + rotate_half(x[..., :rotary_dim]) * s
    assert torch.equal(out, torch.cat((turned, x[..., rotary_dim:]), dim=-1))
    # four half products, two sums, the join; rotate_half's copy would add half as much again
    turned_bytes = x[..., :rotary_dim].numel() * x.element_size()
    assert written.bytes <= 3 * turned_bytes + x.numel() * x.element_size()


def _interleaved():
    path = references_dir() / "deepseek_v3" / "rope.py"
    spec = importlib.util.spec_from_file_location("deepseek_v3_rope", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.apply_rotary_interleaved


def test_the_interleaved_rotation_in_fp32_is_one_complex_product_as_hf_deepseek_v2():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 16)
    cos, sin = _tables(7, 16)
    with Written() as written:
        out = _interleaved()(x, cos, sin)
    freqs_cis = torch.complex(cos[..., :8], sin[..., :8])
    expected, _ = apply_rotary_emb(x, x[:, :1], freqs_cis)
    torch.testing.assert_close(out, expected)  # in place, dim for dim
    table = freqs_cis.numel() * freqs_cis.element_size()
    assert written.bytes <= x.numel() * x.element_size() + table


def test_the_interleaved_rotation_in_bf16_rounds_as_hf_deepseek_v3():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 16, dtype=torch.bfloat16)
    cos, sin = _tables(7, 16)
    out = _interleaved()(x, cos, sin)
    expected, _ = apply_rotary_pos_emb_interleave(x, x, cos.to(x.dtype), sin.to(x.dtype))
    # HF de-interleaves to [evens | odds]; the package keeps the pairs in place
    assert torch.equal(torch.cat((out[..., 0::2], out[..., 1::2]), dim=-1), expected)
