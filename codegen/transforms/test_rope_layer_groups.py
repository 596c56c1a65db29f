"""RopeLayerGroups: before/after on the llama reference whose rope reads a group already."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.rope_group import RopeGroup
from codegen.transforms.rope_layer_groups import RopeLayerGroups

GROUPS = {"other": "near", "test": 'hf_config.layer_types[i] != "sliding_attention"'}


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_the_other_group_is_a_second_table_for_the_layers_that_pick_it():
    package = _llama()
    RopeGroup().apply(package, group="far")
    RopeLayerGroups().apply(package, groups=GROUPS)
    args, model = package.render()["args.py"], package.render()["model.py"]
    assert 'rope=RopeScaling.from_hf(hf_config.rope_parameters["far"], ' in args
    assert 'other_rope=RopeScaling.from_hf(hf_config.rope_parameters["near"], ' in args
    layers = (
        "other_rope_layers=tuple(i for i in range(hf_config.num_hidden_layers)"
        ' if hf_config.layer_types[i] != "sliding_attention")'
    )
    assert layers in args
    assert "other_rope: RopeScaling | None = None" in args
    assert "self.other_rotary = RotaryEmbedding(args.other_rope or args.rope, " in model
    table = "other_rope = self.other_rotary(positions) if self.args.other_rope_layers else None"
    assert table in model
    assert "self.other_rope = layer_id in args.other_rope_layers" in model
    assert "layer(h, other_rope if layer.other_rope else rope)" in model
    compile(model, "model.py", "exec")
    compile(args, "args.py", "exec")


def test_a_rope_read_from_no_group_is_refused():
    with pytest.raises(ValueError, match="no rope_parameters group"):
        RopeLayerGroups().apply(_llama(), groups=GROUPS)
