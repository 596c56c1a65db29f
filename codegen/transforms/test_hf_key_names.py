"""RenameHfKeys: before/after on an adapter table."""

from codegen.scaffold.source import SourcePackage
from codegen.transforms.hf_key_names import RenameHfKeys
from codegen.transforms.testing import package_of

BEFORE = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.self_attn.kq_proj.weight": "layers.{}.attention.x.weight",
        "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
    }
"""

AFTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.c_fc.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.self_attn.kq_proj.weight": "layers.{}.attention.x.weight",
        "model.layers.{}.attn.query.weight": "layers.{}.attention.wq.weight",
    }
"""


def test_renames_whole_components_longest_first():
    package: SourcePackage = package_of({"state_dict_adapter.py": BEFORE})
    mapping = {"mlp.gate_proj": "mlp.c_fc", "self_attn.q_proj": "attn.query", "q_proj": "nope"}
    RenameHfKeys().apply(package, mapping=mapping)
    assert package.render()["state_dict_adapter.py"] == AFTER
