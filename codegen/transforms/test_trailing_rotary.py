"""TrailingRotary: before/after on llama (halves: a new rotation of the slice) and llama
after interleaved_rope (pairs: its rotation's slice turned around), and the maths against
DeepSeek-V4's [nope | rope] rotation."""

import pytest
import torch

from codegen.layers import rope as shared_rope
from codegen.layers.rope import RopeScaling, RotaryEmbedding
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.interleaved_rope import InterleavedRope
from codegen.transforms.testing import package_of
from codegen.transforms.trailing_rotary import TrailingRotary

CALLS = "q, k = apply_rotary_trailing(q, cos, sin), apply_rotary_trailing(k, cos, sin)"


def _llama(interleaved: bool) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    if interleaved:
        InterleavedRope().apply(package)
    TrailingRotary().apply(package)
    return package


def test_halves_turn_the_trailing_slice_through_the_shared_rotation():
    files = _llama(interleaved=False).render()
    assert CALLS in files["model.py"]
    assert (
        "from .args import ModelArgs\nfrom .rope import apply_rotary_trailing\n"
        in files["model.py"]
    )
    rope = files["rope.py"]
    assert "from codegen.layers.rope import apply_rotary\n" in rope
    assert "return torch.cat((passed, apply_rotary(turned, cos, sin)), dim=-1)" in rope


def test_pairs_turn_the_trailing_slice_in_the_interleaved_rotation():
    files = _llama(interleaved=True).render()
    model, rope = files["model.py"], files["rope.py"]
    assert "apply_rotary_interleaved(q, cos, sin)" in model and "trailing" not in model
    assert "passed, turned = x[..., :-rotary_dim], x[..., -rotary_dim:]" in rope
    assert "return torch.cat((passed, turned * cos + rotate_pairs(turned) * sin), dim=-1)" in rope
    assert "Only the trailing rotary_dim dims turn" in rope and "leading rotary_dim" not in rope
    assert "x[..., :rotary_dim]" not in rope


def test_an_interleaved_rotation_of_another_form_is_an_error():
    package = SourcePackage.from_directory(references_dir() / "llama")
    InterleavedRope().apply(package)
    rope = package.render()["rope.py"].replace("x[..., :rotary_dim], x[..., rotary_dim:]", "x, x")
    package.files["rope.py"] = package_of({"rope.py": rope}).files["rope.py"]
    with pytest.raises(EditError):
        TrailingRotary().apply(package)


def test_a_model_without_a_rotation_is_an_error():
    package = package_of({"model.py": "from .args import ModelArgs\n"})
    with pytest.raises(EditError):
        TrailingRotary().apply(package)


def _function(interleaved: bool):
    namespace: dict = {"apply_rotary": shared_rope.apply_rotary}
    text = _llama(interleaved).render()["rope.py"]
    exec(text.replace("from codegen.layers.rope import apply_rotary\n", ""), namespace)  # noqa: S102
    return namespace["apply_rotary_interleaved" if interleaved else "apply_rotary_trailing"]


def _v4(x, cos, sin):
    """HF DeepSeek-V4's rotation: half tables repeated per pair, the trailing slice turned."""
    cos = cos.repeat_interleave(2, dim=-1).unsqueeze(1)
    sin = sin.repeat_interleave(2, dim=-1).unsqueeze(1)
    rope_dim = cos.shape[-1]
    nope, rope = x[..., :-rope_dim], x[..., -rope_dim:]
    turned = torch.stack((-rope[..., 1::2], rope[..., 0::2]), dim=-1).flatten(-2)
    return torch.cat([nope, rope * cos + turned * sin], dim=-1)


def _halves(x, cos, sin):
    """rotate_half's rotation of the trailing slice (cos/sin the cat(freqs, freqs) tables)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    d = cos.shape[-1]
    nope, rope = x[..., :-d], x[..., -d:]
    turned = torch.cat((-rope[..., d // 2 :], rope[..., : d // 2]), dim=-1)
    return torch.cat([nope, rope * cos + turned * sin], dim=-1)


@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("factor", [1.0, 0.25])
def test_matches_the_trailing_rotation(interleaved, factor):
    torch.manual_seed(0)
    head_dim = 16
    rope = RopeScaling(theta=10000.0, partial_rotary_factor=factor)
    positions = torch.arange(7)[None]
    cos, sin = RotaryEmbedding(rope, rope.rotary_dim(head_dim))(positions)
    x = torch.randn(1, 2, 7, head_dim)
    out = _function(interleaved)(x, cos, sin)
    half = cos.shape[-1] // 2
    expected = _v4(x, cos[..., :half], sin[..., :half]) if interleaved else _halves(x, cos, sin)
    torch.testing.assert_close(out, expected)
    if factor < 1:  # the leading dims pass, the trailing ones turn
        torch.testing.assert_close(out[..., : head_dim - 2 * half], x[..., : head_dim - 2 * half])
        assert not torch.allclose(out[..., -2 * half :], x[..., -2 * half :])
