"""RopeInFp32: before/after on the llama reference and an interleaved rotation."""

from __future__ import annotations

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.interleaved_rope import InterleavedRope
from codegen.transforms.rope_fp32 import RopeInFp32


def package_of(name: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / name)


def test_q_and_k_turn_in_fp32_and_come_back():
    package = package_of("llama")
    before = package.render()["model.py"]
    assert "q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)" in before
    RopeInFp32().apply(package)
    after = package.render()["model.py"]
    assert (
        "cos, sin = cos.to(q.dtype), sin.to(q.dtype)\n"
        "        q, k = apply_rotary(q.float(), cos, sin).to(q.dtype), "
        "apply_rotary(k.float(), cos, sin).to(k.dtype)"
    ) in after


def test_interleaved_too():
    package = package_of("llama")
    InterleavedRope().apply(package)
    RopeInFp32().apply(package)
    assert (
        "apply_rotary_interleaved(q.float(), cos, sin).to(q.dtype)"
        in (package.render()["model.py"])
    )


def test_a_reshaped_operand_comes_back_in_its_own_dtype():
    """MLA's one rope key for all heads is rotated as `k_pe.unsqueeze(1)`: the result is
    cast back to `k_pe.dtype`, not to the dtype of a second `unsqueeze` of it."""
    package = package_of("deepseek_v3")
    RopeInFp32().apply(package)
    model = package.render()["model.py"]
    assert "self.rotate(k_pe.unsqueeze(1).float(), cos, sin).to(k_pe.dtype)" in model
    assert ".unsqueeze(1).dtype" not in model


def test_refuses_a_package_without_rotation():
    from codegen.transforms.no_rope import NoRope

    package = package_of("llama")
    NoRope().apply(package)
    with pytest.raises(EditError, match="apply_rotary"):
        RopeInFp32().apply(package)


def test_the_fp32_rotation_is_hfs_maths_in_bf16():
    """HF (cohere): bf16 tables, q upcast, one cast back; the edited call computes the same."""
    from codegen.layers.rope import apply_rotary

    torch.manual_seed(0)
    q = torch.randn(1, 2, 5, 8).bfloat16()
    angles = torch.randn(1, 5, 8)
    cos, sin = angles.cos().bfloat16(), angles.sin().bfloat16()
    halves = torch.cat((-q.float()[..., 4:], q.float()[..., :4]), dim=-1)
    hf = (q.float() * cos.unsqueeze(1) + halves * sin.unsqueeze(1)).to(q.dtype)
    ours = apply_rotary(q.float(), cos, sin).to(q.dtype)
    assert torch.equal(ours, hf)
    assert not torch.equal(apply_rotary(q, cos, sin), hf)  # in bf16 it rounds differently


def test_tables_handed_on_in_fp32_are_not_rounded():
    """olmo3, beam: the rotary embedding returns fp32 cos/sin, so HF turns bf16 q/k on
    unrounded tables: the package keeps its fp32 tables as they are."""
    package = package_of("llama")
    RopeInFp32().apply(package, tables_fp32=True)
    after = package.render()["model.py"]
    assert "cos.to(q.dtype)" not in after
    assert (
        "q, k = apply_rotary(q.float(), cos, sin).to(q.dtype), "
        "apply_rotary(k.float(), cos, sin).to(k.dtype)"
    ) in after


def test_the_inverse_rotation_turns_in_fp32_too():
    """A rotation undone on the attention output (`apply(out, cos, -sin)`, the values' own
    rotation taken back) turns in fp32 like q and k; the tables are rounded once, from the
    plain call."""
    from codegen.transforms.output_rotation import OutputRotation

    package = package_of("llama")
    InterleavedRope().apply(package)
    OutputRotation().apply(package)
    before = package.render()["model.py"]
    assert "apply_rotary_interleaved(out, cos, -sin)" in before
    RopeInFp32().apply(package)
    after = package.render()["model.py"]
    assert "apply_rotary_interleaved(out.float(), cos, -sin).to(out.dtype)" in after
    assert "cos, sin = cos.to(q.dtype), sin.to(q.dtype)" in after
