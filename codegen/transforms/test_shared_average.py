"""AverageSharedExperts: before/after on an add_moe package with a shared expert."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.shared_average import AverageSharedExperts
from codegen.transforms.shared_experts import AddSharedExperts


def moe_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="always")
    return package


@pytest.mark.parametrize("optional", [False, True])
def test_the_shared_sum_is_halved(optional):
    package = moe_package()
    AddSharedExperts().apply(package, size="n_shared_experts", optional=optional)
    before = package.render()["model.py"]
    assert "out = out + self.shared_experts(x)" in before
    AverageSharedExperts().apply(package)
    after = package.render()["model.py"]
    assert "out = (out + self.shared_experts(x)) / 2" in after
    assert "out = out + self.shared_experts(x)" not in after
    # only that line changed
    assert after.replace("(out + self.shared_experts(x)) / 2", "out + self.shared_experts(x)") == (
        before
    )


def test_refuses_a_block_without_shared_experts():
    with pytest.raises(EditError, match="shared expert"):
        AverageSharedExperts().apply(moe_package())
