"""InterleavedRope: before/after on llama, and the maths against HF's two formulations."""

import pytest
import torch

from codegen.layers.rope import RopeScaling, RotaryEmbedding
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.interleaved_rope import InterleavedRope
from codegen.transforms.testing import package_of


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_attention_calls_the_interleaved_rotation_from_a_new_rope_module():
    package = _llama()
    assert "rope.py" not in package.files
    InterleavedRope().apply(package)
    files = package.render()
    model = files["model.py"]
    assert (
        "q, k = apply_rotary_interleaved(q, cos, sin), apply_rotary_interleaved(k, cos, sin)"
        in model
    )
    assert "from .args import ModelArgs\nfrom .rope import apply_rotary_interleaved\n" in model
    assert "def apply_rotary_interleaved(" in files["rope.py"]
    assert "def rotate_pairs(" in files["rope.py"]


def test_an_existing_rope_module_gets_the_functions_appended():
    package = _llama()
    package.files["rope.py"] = package_of({"rope.py": '"""Own rope."""\n\nimport torch\n'}).files[
        "rope.py"
    ]
    InterleavedRope().apply(package)
    rope = package.render()["rope.py"]
    assert rope.startswith('"""Own rope."""')
    assert "def apply_rotary_interleaved(" in rope


def test_a_model_without_apply_rotary_is_an_error():
    package = package_of({"model.py": "from .args import ModelArgs\n"})
    with pytest.raises(EditError):
        InterleavedRope().apply(package)


def _generated_function():
    package = _llama()
    InterleavedRope().apply(package)
    namespace: dict = {}
    exec(package.render()["rope.py"], namespace)  # noqa: S102 - the snippet under test
    return namespace["apply_rotary_interleaved"]


def _cohere(x, inv_freq, positions):
    """HF cohere: repeat_interleave(freqs, 2) tables, rotate_half on (evens, odds) pairs."""
    freqs = positions[..., None].float() * inv_freq
    emb = torch.repeat_interleave(freqs, 2, dim=-1)
    cos, sin = emb.cos().unsqueeze(1), emb.sin().unsqueeze(1)
    rotated = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)
    return x * cos + rotated * sin


@pytest.mark.parametrize("factor", [1.0, 0.5])
def test_matches_hf_pairs_rotation_with_and_without_partial_rotary(factor):
    torch.manual_seed(0)
    head_dim = 16
    rope = RopeScaling(theta=10000.0, partial_rotary_factor=factor)
    rotary_dim = rope.rotary_dim(head_dim)
    positions = torch.arange(7)[None]
    cos, sin = RotaryEmbedding(rope, rotary_dim)(positions)
    x = torch.randn(1, 2, 7, head_dim)
    out = _generated_function()(x, cos, sin)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, rotary_dim, 2).float() / rotary_dim))
    expected = _cohere(x[..., :rotary_dim], inv_freq, positions)
    torch.testing.assert_close(out[..., :rotary_dim], expected)
    torch.testing.assert_close(out[..., rotary_dim:], x[..., rotary_dim:])
