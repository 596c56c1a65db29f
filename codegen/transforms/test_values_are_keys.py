"""ValuesAreKeys: the rotated keys handed to the attention as its values; no wv."""

import pytest

from codegen.transforms.edits import EditError
from codegen.transforms.testing import package_of
from codegen.transforms.values_are_keys import ValuesAreKeys

BEFORE = """
class Attention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(self, x, rope):
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.k_norm(self.wk(x).view(batch, seq, -1, self.head_dim)).transpose(1, 2)
        v = self.wv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))
"""

AFTER = """
class Attention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(self, x, rope):
        batch, seq, _ = x.shape
        q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.k_norm(self.wk(x).view(batch, seq, -1, self.head_dim)).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        v = k  # the keys are the values: one tensor, rotated, read twice
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))
"""

ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attention.wk.weight",
        "model.layers.{}.self_attn.v_proj.weight": "layers.{}.attention.wv.weight",
        "model.layers.{}.self_attn.v_proj.bias": "layers.{}.attention.wv.bias",
        "model.norm.weight": "norm.weight",
    }
"""


def test_before_and_after():
    package = package_of({"model.py": BEFORE, "state_dict_adapter.py": ADAPTER})
    ValuesAreKeys().apply(package)
    files = package.render()
    assert files["model.py"] == AFTER
    assert "v_proj" not in files["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.k_proj.weight"' in files["state_dict_adapter.py"]


def test_keys_rotated_nowhere_is_an_error():
    unrotated = BEFORE.replace("q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)", "")
    package = package_of({"model.py": unrotated, "state_dict_adapter.py": ADAPTER})
    with pytest.raises(EditError, match="rotates no `k`"):
        ValuesAreKeys().apply(package)
