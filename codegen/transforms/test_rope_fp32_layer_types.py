"""RopeFp32LayerTypes: before/after on the deepseek_v3 reference (one rotation for every
layer), and which layers of a built model turn in fp32."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.rope_fp32_layer_types import RopeFp32LayerTypes
from codegen.transforms.sliding_window import SetSlidingWindow

ROTATE = m.Assign(
    targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("rotate")))]
)


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    SetSlidingWindow().apply(package, mode="pattern")  # the layers know their types
    return package


def test_the_typed_layers_rotation_is_wrapped():
    package = _package()
    model = package.module("model.py")
    assert not m.findall(model, m.Call(func=m.Name("in_fp32")))
    RopeFp32LayerTypes().apply(package, types=("full_attention",))
    model = package.module("model.py")
    wrapped = m.IfExp(
        test=m.Comparison(comparisons=[m.ComparisonTarget(operator=m.Equal())]),
        body=m.Call(func=m.Name("in_fp32")),
    )
    assert len(m.findall(model, m.Assign(value=wrapped) & ROTATE)) == 1
    assert m.findall(model, m.FunctionDef(name=m.Name("in_fp32")))


def test_only_the_typed_layers_turn_in_fp32(tmp_path):
    package = _package()
    RopeFp32LayerTypes().apply(package, types=("full_attention",))
    folder = tmp_path / "gen_rope_fp32_types"
    folder.mkdir()
    for name, text in package.render().items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_rope_fp32_types.args")
        model_module = importlib.import_module("gen_rope_fp32_types.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(
        dim=32, n_layers=2, n_heads=2, vocab_size=16, q_lora_rank=8, kv_lora_rank=4,
        qk_nope_head_dim=4, qk_rope_head_dim=4, v_head_dim=4, hidden_dim=8, n_dense_layers=2,
        sliding_window=2, layer_types=("full_attention", "sliding_attention"),
    )  # fmt: skip
    built = model_module.Model(args)
    x = torch.randn(1, 2, 3, 4, dtype=torch.bfloat16)
    cos, sin = torch.randn(1, 3, 4), torch.randn(1, 3, 4)  # fp32 tables
    full, sliding = built.layers[0].attention.rotate, built.layers[1].attention.rotate
    in_fp32 = model_module.apply_rotary_interleaved(x.float(), cos, sin).to(torch.bfloat16)
    assert torch.equal(full(x, cos, sin), in_fp32)
    assert sliding is model_module.apply_rotary_interleaved
    with pytest.raises(ValueError, match="needs the layer types"):
        RopeFp32LayerTypes().apply(_package(), types=())
