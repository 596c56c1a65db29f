"""RouterRenormFloor: before/after on the qwen3_moe reference: the bare renormalisation of
the picked weights clamps the sum to a bound, read from the config field the analysis named
(ModelArgs field, from_hf_config keyword, the router's own copy) or written as the number
HF writes; a router dividing by no bare sum is refused."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import EditError, code_of
from codegen.transforms.router_renorm_floor import RouterRenormFloor

BARE = "weights = weights / weights.sum(dim=-1, keepdim=True)"


def _package() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "qwen3_moe")


def _method(package, cls, name) -> str:
    return code_of(find_method(package.module("model.py"), cls, name))


def test_a_config_field_bound_is_read_and_kept_by_the_router():
    package = _package()
    assert BARE in _method(package, "MoE", "route")
    RouterRenormFloor().apply(package, floor="moe_norm_min")
    route = _method(package, "MoE", "route")
    assert (
        "weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=self.renorm_floor)"
        in route
    )
    assert BARE + "\n" not in route  # no bare division left
    assert "self.renorm_floor = args.renorm_floor" in _method(package, "MoE", "__init__")
    args = package.module("args.py").code
    assert "renorm_floor: float = " in args
    assert "renorm_floor=hf_config.moe_norm_min" in args


def test_a_written_number_is_written_and_reads_no_config():
    package = _package()
    args_before = package.module("args.py").code
    RouterRenormFloor().apply(package, floor=1e-06)
    route = _method(package, "MoE", "route")
    assert "weights.sum(dim=-1, keepdim=True).clamp(min=1e-06)" in route
    assert package.module("args.py").code == args_before
    assert "renorm_floor" not in package.module("model.py").code


def test_no_bare_sum_is_refused(tmp_path):
    import shutil

    folder = tmp_path / "qwen3_moe"
    shutil.copytree(references_dir() / "qwen3_moe", folder)
    model = folder / "model.py"
    model.write_text(model.read_text().replace(BARE, "weights = weights * 1.0"))
    with pytest.raises(EditError, match="divides by no bare sum"):
        RouterRenormFloor().apply(SourcePackage.from_directory(folder), floor="moe_norm_min")


def test_a_bound_that_is_neither_field_nor_number_is_refused():
    with pytest.raises(EditError, match="neither a config field nor a number"):
        RouterRenormFloor().apply(_package(), floor=True)
