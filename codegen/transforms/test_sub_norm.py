"""AddSubNorm: a norm before the attention's or the feed-forward's output projection."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.sub_norm import AddSubNorm
from codegen.transforms.testing import package_of

FFN = """
class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, bias: bool = False):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.w2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x):
        return self.w2(F.relu(self.w1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.feed_forward = FeedForward(args.dim, args.hidden_dim, bias=args.mlp_bias)
"""

FFN_AFTER = """
class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, bias: bool = False, eps: float = 1e-6):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.w2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.sub_norm = RMSNorm(hidden_dim, eps)  # before w2

    def forward(self, x):
        return self.w2(self.sub_norm(F.relu(self.w1(x))))
"""

ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.norm.weight": "norm.weight",
    }
"""


def test_ffn_before_and_after():
    package = package_of({"model.py": FFN, "state_dict_adapter.py": ADAPTER})
    assert "sub_norm" not in package.render()["model.py"]
    AddSubNorm().apply(package, site="ffn")
    files = package.render()
    ffn, block = files["model.py"].split("\n\nclass TransformerBlock")
    assert ffn == FFN_AFTER
    assert "FeedForward(args.dim, args.hidden_dim, bias=args.mlp_bias, eps=args.norm_eps)" in block
    assert (
        '"model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",\n'
        '        "model.layers.{}.mlp.sub_norm.weight": "layers.{}.feed_forward.sub_norm.weight",'
    ) in files["state_dict_adapter.py"]


def test_attention_on_the_llama_reference_norms_what_wo_receives():
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()
    assert "sub_norm" not in before["model.py"]
    AddSubNorm().apply(package, site="attention")
    files = package.render()
    model = files["model.py"]
    assert "self.sub_norm = RMSNorm(args.n_heads * args.head_dim, args.norm_eps)" in model
    assert "return self.wo(self.sub_norm(out.transpose(1, 2).reshape(batch, seq, -1)))" in model
    assert (
        '"model.layers.{}.self_attn.sub_norm.weight": "layers.{}.attention.sub_norm.weight"'
        in files["state_dict_adapter.py"]
    )
    # the bias row of wo (config-switched) stays before the new row
    adapter = files["state_dict_adapter.py"]
    assert adapter.index("attention.wo.bias") < adapter.index("attention.sub_norm.weight")


def test_the_ffn_norm_runs_on_the_inner_activations():
    namespace: dict = {}
    package = package_of({"model.py": FFN, "state_dict_adapter.py": ADAPTER})
    AddSubNorm().apply(package, site="ffn")
    code = package.render()["model.py"].split("class TransformerBlock")[0]
    exec("import torch.nn as nn\nimport torch.nn.functional as F\n" + code, namespace)
    namespace["RMSNorm"] = lambda dim, eps: torch.nn.RMSNorm(dim, eps=eps)
    ffn = namespace["FeedForward"](4, 6, eps=1e-5)
    x = torch.randn(2, 4)
    inner = torch.relu(ffn.w1(x))
    expected = ffn.w2(inner * torch.rsqrt(inner.pow(2).mean(-1, keepdim=True) + 1e-5))
    torch.testing.assert_close(ffn(x), expected)


def test_an_unknown_site_is_refused():
    with pytest.raises(ValueError):
        AddSubNorm().apply(package_of({"model.py": FFN}), site="head")
