"""MapConfigFields: before/after on a from_hf_config."""

import pytest

from codegen.transforms.config_fields import MapConfigFields
from codegen.transforms.edits import EditError
from codegen.transforms.testing import package_of

BEFORE = """
class ModelArgs:
    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(norm_eps=hf_config.rms_norm_eps, n_kv_heads=hf_config.num_key_value_heads)
"""

AFTER = """
class ModelArgs:
    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(norm_eps=hf_config.layer_norm_eps, n_kv_heads=1)
"""


def test_replaces_reads_with_the_targets_expressions():
    package = package_of({"args.py": BEFORE})
    fields = {"rms_norm_eps": "hf_config.layer_norm_eps", "num_key_value_heads": "1"}
    MapConfigFields().apply(package, fields=fields)
    assert package.render()["args.py"] == AFTER


def test_a_field_the_reference_does_not_read_is_an_error():
    package = package_of({"args.py": BEFORE})
    with pytest.raises(EditError):
        MapConfigFields().apply(package, fields={"nonexistent": "1"})
