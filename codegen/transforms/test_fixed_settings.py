"""SetFixedSettings: before/after."""

from codegen.transforms.fixed_settings import SetFixedSettings
from codegen.transforms.testing import package_of

BEFORE = """
FIXED_SETTINGS = {"attention_bias": False, "mlp_bias": False, "hidden_act": "silu"}
"""

AFTER = """
FIXED_SETTINGS = {"attention_bias": True, "hidden_act": "gelu_pytorch_tanh"}
"""


def test_table_is_replaced():
    package = package_of({"args.py": BEFORE})
    settings = {"attention_bias": True, "hidden_act": "gelu_pytorch_tanh"}
    SetFixedSettings().apply(package, settings=settings)
    assert package.render()["args.py"] == AFTER
