"""SinusoidalPositions: the fixed table added before the first layer, equal to HF's rows."""

import math

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.sinusoidal_positions import SinusoidalPositions


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_the_table_is_added_from_the_offset_row_and_nothing_is_mapped():
    package = _llama()
    SinusoidalPositions().apply(package, offset=2)
    files = package.render()
    model = files["model.py"]
    assert model.index("def sinusoidal_positions(") < model.index("class Attention")
    assert (
        "        h = h + sinusoidal_positions(positions + POSITION_OFFSET, self.args.dim)"
        ".to(h.dtype)\n        for layer in self.layers:\n"
    ) in model
    assert files["state_dict_adapter.py"] == _llama().render()["state_dict_adapter.py"]


def test_without_offset_there_is_no_constant():
    package = _llama()
    SinusoidalPositions().apply(package)
    model = package.render()["model.py"]
    assert "POSITION_OFFSET" not in model
    assert "sinusoidal_positions(positions, self.args.dim)" in model


def _table_function():
    package = _llama()
    SinusoidalPositions().apply(package)
    source = package.render()["model.py"]
    start = source.index("def sinusoidal_positions(")
    end = source.index("class Attention")
    namespace = {"torch": torch, "F": torch.nn.functional}
    exec(source[start:end], namespace)  # noqa: S102 - the generated function itself
    return namespace["sinusoidal_positions"]


@pytest.mark.parametrize("dim", [16, 17])
def test_rows_are_tensor2tensors_table(dim):
    """The reference maths, written out: sin | cos of p * exp(-k log(10000) / (dim/2 - 1))."""
    half = dim // 2
    rows = torch.arange(12)
    step = math.log(10000) / (half - 1)
    angle = rows.float()[:, None] * torch.exp(torch.arange(half).float() * -step)[None]
    want = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    if dim % 2:
        want = torch.cat([want, torch.zeros(12, 1)], dim=1)
    assert torch.equal(_table_function()(rows[None], dim)[0], want)


def test_a_negative_offset_is_refused():
    with pytest.raises(EditError):
        SinusoidalPositions().apply(_llama(), offset=-1)


def _pow_table_function():
    package = _llama()
    SinusoidalPositions().apply(package, form="pow")
    source = package.render()["model.py"]
    start = source.index("def sinusoidal_positions(")
    end = source.index("class Attention")
    namespace = {"torch": torch}
    exec(source[start:end], namespace)  # noqa: S102 - the generated function itself
    return namespace["sinusoidal_positions"]


@pytest.mark.parametrize("dim", [16, 17])
def test_pow_rows_are_ctrls_table(dim):
    """The reference maths, written out in float64: column i of p / 10000^(2 * (i // 2) / dim),
    sin of the even columns then cos of the odd ones."""
    rows = torch.arange(12, dtype=torch.float64)
    column = torch.arange(dim, dtype=torch.float64)
    angle = rows[:, None] / 10000 ** (2 * (column // 2) / dim)[None]
    want = torch.cat([torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])], dim=1)
    got = _pow_table_function()(torch.arange(12)[None], dim)[0]
    assert got.shape == (12, dim)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=2e-6)
    # and it is not tensor2tensor's table
    assert not torch.allclose(got, _table_function()(torch.arange(12)[None], dim)[0])


def test_an_unknown_table_form_is_refused():
    with pytest.raises(EditError):
        SinusoidalPositions().apply(_llama(), form="interleaved")
