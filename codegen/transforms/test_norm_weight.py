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


def test_rmsnorm_is_not_edited():
    package = package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER})
    with pytest.raises(EditError):
        DropNormWeight().apply(package)


def test_the_built_norm_is_a_layer_norm_without_tensors():
    """What the generated line builds: no parameters, and the plain normalisation HF's
    non-parametric LayerNorm computes (F.layer_norm with no weight or bias)."""
    norm = nn.LayerNorm(12, eps=1e-5, elementwise_affine=False)
    assert list(norm.parameters()) == []
    x = torch.randn(3, 12)
    torch.testing.assert_close(norm(x), F.layer_norm(x, (12,), None, None, eps=1e-5))
