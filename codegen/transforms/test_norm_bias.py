"""SetNormBias: before/after on LayerNorms made by set_norm_kind."""

import pytest

from codegen.transforms.edits import EditError
from codegen.transforms.norm_bias import SetNormBias
from codegen.transforms.norm_kind import SetNormKind
from codegen.transforms.test_norm_kind import ADAPTER, ADAPTER_WITH_BIAS, LAYERNORM, MODEL
from codegen.transforms.testing import package_of


def _layernorm_package():
    package = package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER})
    SetNormKind().apply(package, kind="layernorm")
    return package


def test_enabled_drops_the_keyword_and_maps_every_norm_bias():
    package = _layernorm_package()
    SetNormBias().apply(package, enabled=True)
    files = package.render()
    assert files["model.py"] == LAYERNORM.replace(", bias=False", "")
    assert files["state_dict_adapter.py"] == ADAPTER_WITH_BIAS


def test_disabled_round_trips():
    package = _layernorm_package()
    SetNormBias().apply(package, enabled=True)
    SetNormBias().apply(package, enabled=False)
    assert package.render() == {"model.py": LAYERNORM, "state_dict_adapter.py": ADAPTER}


def test_rmsnorm_has_no_bias_to_set():
    package = package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER})
    with pytest.raises(EditError):
        SetNormBias().apply(package, enabled=True)


def test_offset_layernorms_get_the_bias_too():
    package = package_of({"model.py": MODEL, "state_dict_adapter.py": ADAPTER})
    SetNormKind().apply(package, kind="layernorm_offset")
    SetNormBias().apply(package, enabled=True)
    files = package.render()
    assert "self.norm = OffsetLayerNorm(args.dim, eps=args.norm_eps)\n" in files["model.py"]
    assert files["state_dict_adapter.py"] == ADAPTER_WITH_BIAS
