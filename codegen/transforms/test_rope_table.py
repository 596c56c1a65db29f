"""RopeTable: RoPE's cos/sin read from the checkpoint's stored [sin | cos] table, by index."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.rope_table import RopeTable


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_before_the_rotary_tables_are_computed_from_positions():
    files = _llama().render()
    model = files["model.py"]
    assert "rope: RopeScaling" in files["args.py"]
    assert "self.rotary = RotaryEmbedding(args.rope, args.head_dim)" in model
    assert "rope = self.rotary(positions)" in model
    assert "if positions is None:" in model


def test_after_the_table_is_built_loaded_and_read_by_index():
    package = _llama()
    RopeTable().apply(package, table="roformer.encoder.embed_positions")
    files = package.render()
    model = files["model.py"]
    assert "self.rope_table = RopeTable(args.max_position_embeddings, args.head_dim)" in model
    assert "rope = self.rope_table(tokens.shape[1])" in model
    assert "self.rotary" not in model and "if positions is None:" not in model
    assert model.index("class RopeTable") < model.index("class Attention")
    assert (
        '"roformer.encoder.embed_positions.weight": "rope_table.weight"'
        in files["state_dict_adapter.py"]
    )
    assert "max_position_embeddings=hf_config.max_position_embeddings," in files["args.py"]
    # no frequency settings left to read (tidy then drops the unused import)
    assert "rope: RopeScaling" not in files["args.py"] and "self.rope" not in files["args.py"]
    assert "rope=RopeScaling.from_hf" not in files["args.py"]


def test_the_table_is_hf_roformers():
    """The rows the package builds are HF's `create_weight` (its init and checkpoint)."""
    from transformers.models.roformer.modeling_roformer import (
        RoFormerSinusoidalPositionalEmbedding,
    )

    package = _llama()
    RopeTable().apply(package, table="t")
    namespace: dict = {}
    source = package.render()["model.py"]
    start = source.index("def sinusoid_rows")
    end = source.index("\nclass ", start)
    exec("import torch\n" + source[start:end], namespace)
    for rows, dim in ((7, 40), (33, 64)):
        hf = RoFormerSinusoidalPositionalEmbedding(rows, dim).create_weight()
        assert torch.equal(namespace["sinusoid_rows"](rows, dim), hf)


def test_a_table_path_is_required():
    with pytest.raises(EditError):
        RopeTable().apply(_llama(), table="")


def test_a_rope_module_written_before_names_the_stored_table():
    from codegen.transforms.interleaved_rope import InterleavedRope

    package = _llama()
    InterleavedRope().apply(package)
    assert "shared rotary tables (`RotaryEmbedding`)" in package.render()["rope.py"]
    RopeTable().apply(package, table="t")
    rope = package.render()["rope.py"]
    assert rope.startswith('"""The rotation of q/k; its cos/sin are rows of the stored table')
    assert "def apply_rotary_interleaved" in rope
