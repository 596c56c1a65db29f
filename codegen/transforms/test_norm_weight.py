"""DropNormWeight: before/after on LayerNorms made by set_norm_kind, and HF OLMo's norm."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codegen.transforms.edits import EditError
from codegen.transforms.norm_bias import SetNormBias
from codegen.transforms.norm_kind import SetNormKind
from codegen.transforms.norm_weight import DropNormWeight
from codegen.transforms.test_norm_kind import ADAPTER, LAYERNORM, MODEL
from codegen.transforms.testing import package_of

ADAPTER_WITHOUT_NORMS = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    }
"""


def _layernorm_package():
    package = package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER})
    SetNormKind().apply(package, kind="layernorm")
    return package


def test_every_layernorm_loses_its_tensors_and_their_rows():
    package = _layernorm_package()
    assert package.render()["model.py"] == LAYERNORM
    DropNormWeight().apply(package)
    files = package.render()
    assert files["model.py"] == LAYERNORM.replace("bias=False", "elementwise_affine=False")
    assert files["state_dict_adapter.py"] == ADAPTER_WITHOUT_NORMS


def test_a_norm_with_a_bias_loses_it_too():
    package = _layernorm_package()
    SetNormBias().apply(package, enabled=True)
    DropNormWeight().apply(package)
    files = package.render()
    assert (
        "nn.LayerNorm(args.dim, eps=args.norm_eps, elementwise_affine=False)" in files["model.py"]
    )
    assert "bias" not in files["state_dict_adapter.py"]


def test_rmsnorms_become_weightless_rmsnorms():
    package = package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER})
    DropNormWeight().apply(package)
    files = package.render()
    model = files["model.py"]
    assert "self.q_norm = PlainRMSNorm(args.head_dim, args.norm_eps)" in model
    assert "self.norm = PlainRMSNorm(args.dim, args.norm_eps)" in model
    assert "class PlainRMSNorm(nn.Module):" in model
    assert "codegen.layers.norm" not in model
    assert files["state_dict_adapter.py"] == ADAPTER_WITHOUT_NORMS


def test_a_model_without_norms_is_refused():
    package = package_of({"model.py": "x = 1\n", "state_dict_adapter.py": ADAPTER})
    with pytest.raises(EditError):
        DropNormWeight().apply(package)


def test_plain_rmsnorm_is_hf_weightless_rmsnorm_in_bf16():
    """HF nanochat's norm: x * rsqrt(mean(x^2) + eps) in fp32, cast back; bit for bit."""
    from codegen.transforms.norm_weight import PLAIN_RMSNORM

    space = {"torch": torch, "nn": nn}
    exec(PLAIN_RMSNORM, space)  # noqa: S102 - the class the transform writes
    norm = space["PlainRMSNorm"](12, eps=1e-6)
    assert list(norm.parameters()) == []
    x = torch.randn(3, 12).to(torch.bfloat16)
    x32 = x.float()
    want = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).type_as(x)
    assert torch.equal(norm(x), want)


def test_the_built_norm_is_a_layer_norm_without_tensors():
    """What the generated line builds: no parameters, and the plain normalisation HF's
    non-parametric LayerNorm computes (F.layer_norm with no weight or bias)."""
    norm = nn.LayerNorm(12, eps=1e-5, elementwise_affine=False)
    assert list(norm.parameters()) == []
    x = torch.randn(3, 12)
    torch.testing.assert_close(norm(x), F.layer_norm(x, (12,), None, None, eps=1e-5))
