"""ValueHeadDim: before/after on the llama reference, and the value heads the package builds."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.value_head_dim import ValueHeadDim


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    ValueHeadDim().apply(package, field="hf_config.v_head_dim")
    return package


def _head_dim_in(model, target) -> list:
    """The head sizes read in the statement assigning `target`."""
    (statement,) = m.findall(model, m.Assign(targets=[m.AssignTarget(target)]))
    return [a.attr.value for a in m.findall(statement, m.Attribute(attr=m.Name()))]


def test_values_and_output_sized_by_the_value_head():
    model = _package().module("model.py")
    wv = m.Attribute(value=m.Name("self"), attr=m.Name("wv"))
    wo = m.Attribute(value=m.Name("self"), attr=m.Name("wo"))
    for target in (wv, wo, m.Name("v")):
        read = _head_dim_in(model, target)
        assert "v_head_dim" in read and "head_dim" not in read, read
    wk = m.Attribute(value=m.Name("self"), attr=m.Name("wk"))
    assert "head_dim" in _head_dim_in(model, wk)  # keys keep theirs
    args = _package().module("args.py")
    read = m.Arg(keyword=m.Name("v_head_dim"), value=m.Attribute(attr=m.Name("v_head_dim")))
    assert m.findall(args, read)


def test_the_package_builds_narrower_values(tmp_path):
    folder = tmp_path / "gen_value_head"
    folder.mkdir()
    for filename, text in _package().render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_value_head.args")
        model_module = importlib.import_module("gen_value_head.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(
        dim=32, n_layers=1, n_heads=4, n_kv_heads=2, head_dim=8, v_head_dim=4, vocab_size=16
    )
    model = model_module.Model(args)
    attention = model.layers[0].attention
    assert attention.wv.weight.shape == (8, 32) and attention.wo.weight.shape == (32, 16)
    assert model(torch.randint(0, 16, (1, 5))).shape == (1, 5, 16)


def test_without_the_field_it_refuses():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(ValueError):
        ValueHeadDim().apply(package, field=None)
