"""QkNormRopeLayers: before/after on the qwen3 reference."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.qk_norm_rope_layers import QkNormRopeLayers


def test_norm_runs_only_where_rope_is_given():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    before = package.render()["model.py"]
    QkNormRopeLayers().apply(package)
    model = package.render()["model.py"]
    (norm_line,) = [line for line in before.splitlines() if "self.q_norm(" in line]
    guarded = (
        "        if rope is not None:  # RoPE layers only: NoPE layers keep q and k unnormed\n"
    )
    assert guarded + "    " + norm_line + "\n" in model
    QkNormRopeLayers().apply(package)
    assert package.render()["model.py"] == model


def test_a_model_without_qk_norm_is_an_error():
    with pytest.raises(EditError):
        QkNormRopeLayers().apply(SourcePackage.from_directory(references_dir() / "llama"))
