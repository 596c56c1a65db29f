"""AddNopeLayers: before/after on the llama reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.nope_layers import AddNopeLayers
from codegen.transforms.sliding_window import SetSlidingWindow


def test_nope_layers_get_no_rope():
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddNopeLayers().apply(package, rope_rule="hf_config.no_rope_layers[i]")
    files = package.render()
    model = files["model.py"]
    assert "def __init__(self, args: ModelArgs, layer_id: int):" in model
    assert "self.use_rope = layer_id not in args.nope_layers" in model
    assert "self.attention(self.attention_norm(x), rope if self.use_rope else None)" in model
    assert "rope: tuple[torch.Tensor, torch.Tensor] | None" in model
    lines = [line.strip() for line in model.splitlines()]
    guard = lines.index("if rope is not None:  # None: a NoPE layer")
    assert lines[guard + 1 : guard + 3] == [
        "cos, sin = rope",
        "q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)",
    ]
    assert "TransformerBlock(args, i) for i in range(args.n_layers)" in model
    assert (
        "nope_layers=tuple(\n"
        "                i for i in range(hf_config.num_hidden_layers)"
        " if not hf_config.no_rope_layers[i]\n"
        "            )"
    ) in files["args.py"] or (
        "nope_layers=tuple(i for i in range(hf_config.num_hidden_layers)"
        " if not hf_config.no_rope_layers[i])"
    ) in files["args.py"]


def test_a_compound_rule_is_negated_whole():
    """cohere2-style: RoPE only where the layer keeps a window; the NoPE layers are the rest."""
    package = SourcePackage.from_directory(references_dir() / "llama")
    rule = (
        '(hf_config.sliding_window if hf_config.layer_types[i] == "sliding_attention"'
        " else None) is not None"
    )
    AddNopeLayers().apply(package, rope_rule=rule)
    args = " ".join(package.render()["args.py"].split())
    assert f"if not ({rule})" in args.replace("( ", "(").replace(" )", ")")


def test_without_a_rule_the_transform_refuses():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(ValueError, match="which layers skip RoPE"):
        AddNopeLayers().apply(package, rope_rule=None)


def test_nope_layers_share_the_layer_index_with_a_window_pattern():
    package = SourcePackage.from_directory(references_dir() / "llama")
    SetSlidingWindow().apply(package, mode="pattern")
    AddNopeLayers().apply(package, rope_rule="hf_config.no_rope_layers[i]")
    model = package.render()["model.py"]
    assert model.count("layer_id: int") == 1
    assert "self.attention(self.attention_norm(x), rope if self.use_rope else None, mask)" in model
