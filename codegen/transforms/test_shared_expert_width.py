"""SharedExpertWidth: before/after on the deepseek_v3 reference (its shared expert is
n_shared_experts x moe_hidden_dim wide), and the width the package builds from a config."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import libcst.matchers as m
import pytest

from codegen.analyze.reference import shared_width
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.shared_expert_width import SharedExpertWidth

SIZE = "config.shared_experts_intermediate_size * config.n_shared_experts"


def _shared(width) -> m.Assign:
    return m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("shared_experts")))],
        value=m.Call(func=m.Name("FeedForward"), args=[m.Arg(), m.Arg(width)]),
    )


def _package() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def test_the_shared_expert_reads_its_own_width():
    package = _package()
    own = m.Attribute(value=m.Name("args"), attr=m.Name("shared_hidden_dim"))
    assert not m.findall(package.module("model.py"), _shared(own))
    SharedExpertWidth().apply(package, size=SIZE)
    assert len(m.findall(package.module("model.py"), _shared(own))) == 1
    args = package.render()["args.py"]
    assert "shared_hidden_dim: int = 1536" in args
    flat = " ".join(args.split())
    assert (
        "shared_hidden_dim=hf_config.shared_experts_intermediate_size"
        " * hf_config.n_shared_experts" in flat
    )


def test_the_width_comes_from_the_config(tmp_path):
    package = _package()
    SharedExpertWidth().apply(package, size="config.moe_intermediate_size * 3")
    folder = tmp_path / "gen_shared_width"
    folder.mkdir()
    for name, text in package.render().items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_shared_width.args")
    finally:
        sys.path.remove(str(tmp_path))
    transformers = pytest.importorskip("transformers")
    config = transformers.DeepseekV3Config(moe_intermediate_size=24, n_shared_experts=1)
    assert args_module.ModelArgs.from_hf_config(config).shared_hidden_dim == 72


def test_a_shared_expert_is_compared_by_where_its_width_comes_from():
    assert shared_width(SIZE) == "own_field"
    assert shared_width("config.shared_expert_intermediate_size") == "own_field"
    for deepseek in (
        "config.moe_intermediate_size * config.n_shared_experts",
        "config.intermediate_size",  # dots1's toy (no shared expert there)
        None,
        "unknown",
    ):
        assert shared_width(deepseek) == "per_expert"


def test_a_size_that_is_no_expression_is_refused():
    with pytest.raises(ValueError, match="not an expression"):
        SharedExpertWidth().apply(_package(), SimpleNamespace(), size="config.(")
