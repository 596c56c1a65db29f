"""ReversedRope: q/k turn by -angle, matching a rotate_half written cat((x2, -x1))."""

import pytest
import torch

from codegen.layers.rope import apply_rotary
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.reversed_rope import ReversedRope
from codegen.transforms.testing import package_of

LINE = "        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)\n"


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_before_the_rotation_takes_the_sine_as_it_is():
    assert LINE in _llama().render()["model.py"]


def test_after_every_rotation_takes_the_negated_sine():
    package = _llama()
    ReversedRope().apply(package)
    model = package.render()["model.py"]
    assert "        q, k = apply_rotary(q, cos, -sin), apply_rotary(k, cos, -sin)\n" in model
    assert LINE not in model


def _turned_back(x, cos, sin):
    """The other half-rotation convention, written out: x * cos + cat((x2, -x1)) * sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.unsqueeze(1) + torch.cat((x2, -x1), dim=-1) * sin.unsqueeze(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_negated_sine_is_the_other_convention_bit_for_bit(dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8, dtype=dtype)
    angles = torch.randn(2, 5, 4)
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    want = _turned_back(x, cos.to(dtype), sin.to(dtype))
    assert torch.equal(apply_rotary(x, cos, -sin), want)
    assert not torch.allclose(apply_rotary(x, cos, sin).float(), want.float(), atol=1e-2)


def test_a_model_without_the_rotation_is_refused():
    package = package_of({"model.py": "class Model:\n    def forward(self):\n        pass\n"})
    with pytest.raises(EditError):
        ReversedRope().apply(package)
