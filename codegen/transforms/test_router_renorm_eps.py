"""RouterRenormEps: before/after on the references: the renormalisation of the picked weights
divides by the sum plus the number HF adds (qwen3_moe's bare sum gains it, deepseek_v3's
1e-20 becomes another one or goes where HF adds none); a sum plus something that is not a
number is left alone, and a constant where the package divides by no sum is refused."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import EditError, code_of
from codegen.transforms.router_renorm_eps import RouterRenormEps

BARE = "weights = weights / weights.sum(dim=-1, keepdim=True)"


def _method(package, cls, name) -> str:
    return code_of(find_method(package.module("model.py"), cls, name))


def _package(reference: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / reference)


def test_the_bare_sum_gains_the_constant():
    package = _package("qwen3_moe")
    assert BARE in _method(package, "MoE", "route")
    RouterRenormEps().apply(package, eps=1e-06)
    route = _method(package, "MoE", "route")
    assert "weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-06)" in route
    assert BARE not in route


def test_the_references_constant_becomes_the_targets():
    package = _package("deepseek_v3")
    assert "weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)" in _method(
        package, "Gate", "forward"
    )
    RouterRenormEps().apply(package, eps=1e-06)
    forward = _method(package, "Gate", "forward")
    assert "weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-06)" in forward
    assert "1e-20" not in forward


def test_no_constant_where_hf_adds_none():
    package = _package("deepseek_v3")
    RouterRenormEps().apply(package, eps=None)
    forward = _method(package, "Gate", "forward")
    assert BARE in forward and "1e-20" not in forward


def test_a_sum_plus_a_non_number_is_not_the_routers():
    import libcst as cst

    from codegen.transforms._moe_edits import Renormalise

    package = _package("qwen3_moe")
    before = _method(package, "MoE", "route").replace(
        "weights.sum(dim=-1, keepdim=True)", "(weights.sum(dim=-1, keepdim=True) + self.eps)"
    )
    edited = cst.parse_module(before).visit(Renormalise(None, None, 1e-06))
    assert "(weights.sum(dim=-1, keepdim=True) + self.eps)" in edited.code
    assert "1e-06" not in edited.code


def test_a_constant_without_a_renormalisation_is_refused(tmp_path):
    import shutil

    folder = tmp_path / "qwen3_moe"
    shutil.copytree(references_dir() / "qwen3_moe", folder)
    model = folder / "model.py"
    assert BARE in model.read_text()
    model.write_text(model.read_text().replace(BARE, "weights = weights * 1.0"))  # picks only
    with pytest.raises(EditError, match="divides by no sum"):
        RouterRenormEps().apply(SourcePackage.from_directory(folder), eps=1e-20)
    RouterRenormEps().apply(SourcePackage.from_directory(folder), eps=None)  # nothing to do


def test_a_constant_that_is_not_a_number_is_refused():
    with pytest.raises(EditError, match="not a number"):
        RouterRenormEps().apply(_package("qwen3_moe"), eps="1e-6")
