"""UniformLayerBases: before/after, and the pin it writes refuses differing entries."""

from types import SimpleNamespace

import pytest

from codegen.config_checks import require_settings
from codegen.transforms.testing import package_of
from codegen.transforms.uniform_layer_bases import UniformLayerBases

BEFORE = """
FIXED_SETTINGS = {"hidden_act": "silu"}
"""

AFTER = """
FIXED_SETTINGS = {"hidden_act": "silu", "bases": {"each_same_as": "rope_parameters.rope_theta"}}
"""

BASES = {"field": "bases", "base": "rope_parameters.rope_theta"}


def test_the_list_is_pinned_to_the_one_base():
    package = package_of({"args.py": BEFORE})
    UniformLayerBases().apply(package, bases=BASES)
    assert package.render()["args.py"] == AFTER


def _config(bases):
    return SimpleNamespace(bases=bases, rope_parameters={"rope_theta": 1e4})


def test_the_pin_accepts_the_one_base_and_refuses_another():
    pin = {"bases": {"each_same_as": "rope_parameters.rope_theta"}}
    require_settings(_config([1e4, 1e4]), pin)
    require_settings(_config(None), pin)
    require_settings(SimpleNamespace(rope_parameters={"rope_theta": 1e4}), pin)  # no field
    with pytest.raises(
        NotImplementedError,
        match=r"bases=\[10000.0, 500000.0\] .*rope_parameters.rope_theta=10000.0;",
    ):
        require_settings(_config([1e4, 5e5]), pin)
