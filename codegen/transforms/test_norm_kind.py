"""SetNormKind: before/after on a small model, and exactness of OffsetRMSNorm vs HF Gemma."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.norm_kind import OFFSET_LAYERNORM, OFFSET_RMSNORM, SetNormKind
from codegen.transforms.testing import package_of

MODEL = """
import torch
from torch import nn

from codegen.layers.norm import RMSNorm
from codegen.layers.rope import apply_rotary


class Attention(nn.Module):
    def __init__(self, args):
        self.q_norm = RMSNorm(args.head_dim, args.norm_eps)


class Model(nn.Module):
    def __init__(self, args):
        self.norm = RMSNorm(args.dim, args.norm_eps)
"""

LAYERNORM = """
import torch
from torch import nn

from codegen.layers.rope import apply_rotary


class Attention(nn.Module):
    def __init__(self, args):
        self.q_norm = nn.LayerNorm(args.head_dim, eps=args.norm_eps, bias=False)


class Model(nn.Module):
    def __init__(self, args):
        self.norm = nn.LayerNorm(args.dim, eps=args.norm_eps, bias=False)
"""

ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.q_norm.weight": "layers.{}.attention.q_norm.weight",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.norm.weight": "norm.weight",
    }
"""

ADAPTER_WITH_BIAS = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.q_norm.weight": "layers.{}.attention.q_norm.weight",
        "model.layers.{}.self_attn.q_norm.bias": "layers.{}.attention.q_norm.bias",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.norm.weight": "norm.weight",
        "model.norm.bias": "norm.bias",
    }
"""


def _package():
    return package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER})


def test_layernorm_without_bias():
    package = _package()
    SetNormKind().apply(package, kind="layernorm", bias=False)
    assert package.render() == {"model.py": LAYERNORM, "state_dict_adapter.py": ADAPTER}


def test_layernorm_with_bias_maps_a_bias_for_every_norm():
    package = _package()
    SetNormKind().apply(package, kind="layernorm", bias=True)
    files = package.render()
    assert "nn.LayerNorm(args.dim, eps=args.norm_eps)\n" in files["model.py"]
    assert files["state_dict_adapter.py"] == ADAPTER_WITH_BIAS


def test_offset_rmsnorm_class_replaces_every_rmsnorm():
    package = _package()
    SetNormKind().apply(package, kind="rmsnorm_offset")
    files = package.render()
    model = files["model.py"]
    assert "RMSNorm(" not in model.replace("OffsetRMSNorm(", "")
    assert "from codegen.layers.norm" not in model
    assert model.count("OffsetRMSNorm(args.") == 2
    assert model.index("class OffsetRMSNorm") < model.index("class Attention")
    # the import section keeps its blank line before the first-party imports
    assert "from torch import nn\n\nfrom codegen.layers.rope import apply_rotary" in model
    assert files["state_dict_adapter.py"] == ADAPTER


def test_offset_rmsnorm_has_no_bias_and_unknown_kinds_fail():
    with pytest.raises(ValueError):
        SetNormKind().apply(_package(), kind="rmsnorm_offset", bias=True)
    with pytest.raises(ValueError):
        SetNormKind().apply(_package(), kind="batchnorm")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_offset_rmsnorm_matches_hf_gemma_bit_for_bit(dtype):
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    namespace = {"torch": torch, "nn": torch.nn}
    exec(OFFSET_RMSNORM, namespace)
    ours, theirs = namespace["OffsetRMSNorm"](64, 1e-6), GemmaRMSNorm(64, eps=1e-6)
    torch.manual_seed(0)
    weight = torch.randn(64)
    ours.weight.data.copy_(weight)
    theirs.weight.data.copy_(weight)
    x = torch.randn(2, 5, 64).to(dtype)
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    assert torch.equal(ours(x), theirs(x))


def test_on_the_qwen3_reference_qk_norms_follow():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    SetNormKind().apply(package, kind="layernorm", bias=True)
    files = package.render()
    assert "self.q_norm = nn.LayerNorm(args.head_dim, eps=args.norm_eps)" in files["model.py"]
    assert "self.attention_norm = nn.LayerNorm(args.dim, eps=args.norm_eps)" in files["model.py"]
    adapter = files["state_dict_adapter.py"]
    for hf in ("self_attn.k_norm", "input_layernorm", "post_attention_layernorm"):
        assert f'"model.layers.{{}}.{hf}.bias"' in adapter
    assert '"model.norm.bias": "norm.bias"' in adapter


def test_offset_layernorm_class_replaces_every_rmsnorm():
    package = _package()
    SetNormKind().apply(package, kind="layernorm_offset", bias=False)
    files = package.render()
    model = files["model.py"]
    assert model.count("OffsetLayerNorm(args.") == 2
    assert "self.norm = OffsetLayerNorm(args.dim, eps=args.norm_eps, bias=False)" in model
    assert model.index("class OffsetLayerNorm") < model.index("class Attention")
    assert files["state_dict_adapter.py"] == ADAPTER


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_offset_layernorm_matches_hf_layernorm1p(dtype):
    from transformers.models.nemotron.modeling_nemotron import NemotronLayerNorm1P

    namespace = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional}
    exec(OFFSET_LAYERNORM, namespace)
    ours, theirs = namespace["OffsetLayerNorm"](64, eps=1e-5), NemotronLayerNorm1P(64, eps=1e-5)
    torch.manual_seed(0)
    for name in ("weight", "bias"):
        value = torch.randn(64)
        getattr(ours, name).data.copy_(value)
        getattr(theirs, name).data.copy_(value)
    x = torch.randn(2, 5, 64).to(dtype)
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    assert torch.equal(ours(x), theirs(x))
