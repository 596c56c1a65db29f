"""ValueScale: before/after on the llama reference, and the scaled values in the package."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.value_scale import ValueScale

FACTOR = "hf_config.attention_value_scale if hf_config.attention_value_scale is not None else 1.0"


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    ValueScale().apply(package, factor=FACTOR)
    return package


def test_values_times_the_factor_once_projected():
    model = _package().module("model.py")
    scaled = m.Assign(
        targets=[m.AssignTarget(m.Name("v"))],
        value=m.BinaryOperation(
            operator=m.Multiply(),
            right=m.Attribute(value=m.Name("self"), attr=m.Name("v_scale")),
        ),
    )
    (statement,) = m.findall(model, scaled)
    wv = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("wv")))
    assert m.findall(statement.value.left, wv)
    k = m.Assign(targets=[m.AssignTarget(m.Name("k"))], value=m.BinaryOperation())
    assert not m.findall(model, k)  # keys as projected


def _load(tmp_path):
    folder = tmp_path / "gen_value_scale"
    folder.mkdir()
    for filename, text in _package().render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        return (
            importlib.import_module("gen_value_scale.args"),
            importlib.import_module("gen_value_scale.model"),
        )
    finally:
        sys.path.remove(str(tmp_path))


def test_the_factor_read_as_hf_computes_it_scales_the_output(tmp_path):
    transformers = pytest.importorskip("transformers")
    args_module, model_module = _load(tmp_path)

    def config(scale):
        cfg = transformers.LlamaConfig(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=64,
        )
        cfg.attention_value_scale = scale
        return cfg

    assert args_module.ModelArgs.from_hf_config(config(None)).v_scale == 1.0
    args = args_module.ModelArgs.from_hf_config(config(0.5))
    assert args.v_scale == 0.5
    torch.manual_seed(0)
    model = model_module.Model(args)
    x = torch.randn(1, 5, 32)
    rope = model.rotary(torch.arange(5).unsqueeze(0))
    attention = model.layers[0].attention
    half = attention(x, rope)
    attention.v_scale = 1.0
    # the values enter the attention linearly: half the values, half the output (wo no bias)
    torch.testing.assert_close(half, attention(x, rope) * 0.5)
