"""LayerRopeBases: before/after on the llama reference, and the args it writes."""

import importlib
import sys
from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.layer_rope_bases import LayerRopeBases
from codegen.transforms.nope_layers import AddNopeLayers

BASES = {"field": "bases", "base": "rope_parameters.rope_theta"}


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_each_layer_rotates_with_the_table_of_its_own_base():
    package = _llama()
    LayerRopeBases().apply(package, bases=BASES)
    args, model = package.render()["args.py"], package.render()["model.py"]
    assert "layer_rope_bases: tuple[float, ...] | None = None" in args
    assert 'layer_rope_bases=getattr(hf_config, "bases", None)' in args
    assert "(self.rope.theta,) * self.n_layers" in args
    assert "from dataclasses import replace" in model
    other = "self.other_bases = sorted({b for b in args.layer_rope_bases if b} - {args.rope.theta})"
    assert other in model
    assert "RotaryEmbedding(replace(args.rope, theta=base), args.head_dim)" in model
    assert "ropes = {self.args.rope.theta: rope, 0: None}" in model
    assert "(rotary(positions) for rotary in self.base_rotaries)" in model
    assert "self.rope_base = args.layer_rope_bases[layer_id]" in model
    assert "layer(h, ropes[layer.rope_base])" in model
    assert "if rope is not None:  # None: a NoPE layer" in model
    assert model.count("rope: tuple[torch.Tensor, torch.Tensor] | None") == 2
    compile(model, "model.py", "exec")
    compile(args, "args.py", "exec")


def test_with_nope_layers_too_the_rotation_is_guarded_once():
    package = _llama()
    LayerRopeBases().apply(package, bases=BASES)
    AddNopeLayers().apply(package, rope_rule="hf_config.no_rope_layers[i]")
    assert package.render()["model.py"].count("if rope is not None") == 1


def test_a_list_that_replaces_another_value_is_refused():
    with pytest.raises(ValueError, match="not the RoPE base"):
        LayerRopeBases().apply(_llama(), bases={"field": "bases", "base": "rope_scaling"})


def test_the_args_take_the_list_and_default_to_the_one_base(tmp_path):
    package = _llama()
    LayerRopeBases().apply(package, bases=BASES)
    (tmp_path / "layer_bases_pkg").mkdir()
    for name, text in package.render().items():
        (tmp_path / "layer_bases_pkg" / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args = importlib.import_module("layer_bases_pkg.args")
    finally:
        sys.path.remove(str(tmp_path))
    hf = _hf_config(bases=[1e4, 0, 5e5, 1e4])
    assert args.ModelArgs.from_hf_config(hf).layer_rope_bases == (1e4, 0, 5e5, 1e4)
    assert args.ModelArgs.from_hf_config(_hf_config()).layer_rope_bases == (1e4,) * 4
    with pytest.raises(ValueError, match="3 layer_rope_bases for 4 layers"):
        args.ModelArgs.from_hf_config(_hf_config(bases=[1e4] * 3))


def _hf_config(**fields):
    """A llama-shaped config of 4 layers (the reference's fields), `fields` on top."""
    return SimpleNamespace(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=256,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4},
        max_position_embeddings=128,
        attention_bias=False,
        mlp_bias=False,
        pad_token_id=None,
        tie_word_embeddings=False,
        hidden_act="silu",
        **fields,
    )
