"""LatentNormEps: before/after on the deepseek_v3 reference (latent norms at 1e-6)."""

from __future__ import annotations

import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.latent_norm_eps import LatentNormEps


def _norm(attr: str, *args) -> m.Assign:
    return m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attr)))],
        value=m.Call(func=m.Name("RMSNorm"), args=[m.Arg(a) for a in args]),
    )


def test_the_latent_norms_take_the_configs_eps():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    eps = m.Attribute(value=m.Name("args"), attr=m.Name("norm_eps"))
    model = package.module("model.py")
    assert not m.findall(model, _norm("q_norm", m.DoNotCare(), eps))
    LatentNormEps().apply(package)
    model = package.module("model.py")
    for attr in ("q_norm", "kv_norm"):
        assert len(m.findall(model, _norm(attr, m.DoNotCare(), eps))) == 1, attr
    with pytest.raises(EditError, match="q_norm and kv_norm"):
        LatentNormEps().apply(package)  # given already: nothing left to give one
