"""AddNopeLayers: before/after on the llama reference."""

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.nope_layers import AddNopeLayers
from codegen.transforms.sliding_window import SetSlidingWindow


def test_nope_layers_get_no_rope():
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddNopeLayers().apply(package)
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
        "nope_layers=tuple(i for i, rope in enumerate(hf_config.no_rope_layers) if not rope)"
        in (files["args.py"])
    )


def test_nope_layers_share_the_layer_index_with_a_window_pattern():
    package = SourcePackage.from_directory(references_dir() / "llama")
    SetSlidingWindow().apply(package, mode="pattern")
    AddNopeLayers().apply(package)
    model = package.render()["model.py"]
    assert model.count("layer_id: int") == 1
    assert "self.attention(self.attention_norm(x), rope if self.use_rope else None, mask)" in model
