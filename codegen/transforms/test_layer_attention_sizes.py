"""LayerAttentionSizes: before/after on the qwen3 reference (one RoPE table, and one table per
layer type), and what the package builds from a transformers config with per-layer
overrides (`per_layer_config`)."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.layer_attention_sizes import LayerAttentionSizes
from codegen.transforms.rope_per_layer_type import SetRopePerLayerType


def _sized(per_type: bool) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    if per_type:
        SetRopePerLayerType().apply(package)
    LayerAttentionSizes().apply(package)
    return package


def _self_assign(attr: str, value) -> m.Assign:
    return m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attr)))],
        value=value,
    )


def _entry(field: str) -> m.Subscript:
    # args.<field>[layer_id]
    return m.Subscript(
        value=m.Attribute(value=m.Name("args"), attr=m.Name(field)),
        slice=[m.SubscriptElement(m.Index(m.Name("layer_id")))],
    )


def test_each_attention_reads_its_layers_entries():
    model = _sized(per_type=False).module("model.py")
    assert m.findall(model, _self_assign("head_dim", _entry("layer_head_dims")))
    assert m.findall(model, _self_assign("n_kv_heads", _entry("layer_n_kv_heads")))
    built = m.Call(func=m.Name("Attention"), args=[m.Arg(m.Name("args")), m.Arg(m.Name())])
    assert len(m.findall(model, built)) == 1
    (attention,) = m.findall(model, m.ClassDef(name=m.Name("Attention")))
    global_size = m.Attribute(value=m.Name("args"), attr=m.Name("head_dim") | m.Name("n_kv_heads"))
    assert not m.findall(attention, global_size)  # every size is the layer's own


def test_per_type_tables_take_their_types_width():
    model = _sized(per_type=True).module("model.py")
    for table, layer_type in (
        ("rotary", "full_attention"),
        ("sliding_rotary", "sliding_attention"),
    ):
        width = m.Call(
            func=m.Attribute(value=m.Name("head_dims"), attr=m.Name("get")),
            args=[m.Arg(m.SimpleString(f'"{layer_type}"')), m.Arg()],
        )
        rotary = m.Call(func=m.Name("RotaryEmbedding"), args=[m.Arg(), m.Arg(width)])
        assert m.findall(model, _self_assign(table, rotary)), table


def _load(package: SourcePackage, tmp_path, name: str):
    folder = tmp_path / name
    folder.mkdir()
    for filename, text in package.render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(f"{name}.args"), importlib.import_module(f"{name}.model")
    finally:
        sys.path.remove(str(tmp_path))


def _qwen3(**overrides):
    transformers = pytest.importorskip("transformers")
    return transformers.Qwen3Config(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=64,
        **overrides,
    )


def test_sizes_come_from_each_layers_config(tmp_path):
    args_module, model_module = _load(_sized(per_type=False), tmp_path, "gen_layer_sizes")
    config = _qwen3(per_layer_config={2: {"num_key_value_heads": 1}})
    args = args_module.ModelArgs.from_hf_config(config)
    assert args.layer_n_kv_heads == (2, 2, 1) and args.layer_head_dims == (8, 8, 8)
    model = model_module.Model(args)
    assert model.layers[2].attention.wk.weight.shape == (8, 32)
    assert model.layers[0].attention.wk.weight.shape == (16, 32)
    uniform = args_module.ModelArgs.from_hf_config(_qwen3())
    assert uniform.layer_head_dims == (8, 8, 8) and uniform.layer_n_kv_heads == (2, 2, 2)


def test_other_overrides_and_one_table_for_two_widths_are_refused(tmp_path):
    args_module, _ = _load(_sized(per_type=False), tmp_path, "gen_layer_refusals")
    with pytest.raises(NotImplementedError, match="per_layer_config overrides"):
        args_module.ModelArgs.from_hf_config(_qwen3(per_layer_config={1: {"intermediate_size": 8}}))
    with pytest.raises(NotImplementedError, match="one RoPE table"):
        args_module.ModelArgs.from_hf_config(_qwen3(per_layer_config={1: {"head_dim": 16}}))


KV_RULE = "hf_config.num_key_value_heads * 2 if i % 2 else hf_config.num_key_value_heads"


def _by_rule(rules: dict) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    LayerAttentionSizes().apply(package, rules=rules)
    return package


def test_kv_heads_by_rule_leave_the_head_size_global():
    package = _by_rule({"n_kv_heads": KV_RULE})
    model = package.module("model.py")
    assert m.findall(model, _self_assign("n_kv_heads", _entry("layer_n_kv_heads")))
    head_dim = m.Attribute(value=m.Name("args"), attr=m.Name("head_dim"))
    assert m.findall(model, _self_assign("head_dim", head_dim))  # one head size for all
    args = package.module("args.py")
    assert not m.findall(args, m.Name("layer_head_dims"))
    assert not m.findall(args, m.Attribute(attr=m.Name("per_layer_config")))


def test_sizes_by_rule_are_computed_per_layer(tmp_path):
    args_module, model_module = _load(_by_rule({"n_kv_heads": KV_RULE}), tmp_path, "gen_rule")
    args = args_module.ModelArgs.from_hf_config(_qwen3())
    assert args.layer_n_kv_heads == (2, 4, 2)
    model = model_module.Model(args)
    assert model.layers[1].attention.wk.weight.shape == (32, 32)
    assert model.layers[0].attention.wk.weight.shape == (16, 32)


def test_a_rule_for_a_size_it_cannot_take_is_refused():
    with pytest.raises(ValueError, match="only"):
        _by_rule({"v_head_dim": "hf_config.head_dim"})


# inkling's sliding layers: heads, kv heads and head size of their own (here: even layers)
SLIDING = "i % 2 == 0"
ALL_RULES = {
    "head_dim": f"hf_config.head_dim // 2 if {SLIDING} else hf_config.head_dim",
    "n_heads": f"hf_config.num_attention_heads + 2 if {SLIDING} else hf_config.num_attention_heads",
    "n_kv_heads": f"hf_config.num_key_value_heads + 1 if {SLIDING} else"
    " hf_config.num_key_value_heads",
}


def _unrotated(rules: dict) -> SourcePackage:
    from codegen.transforms.no_rope import NoRope

    package = SourcePackage.from_directory(references_dir() / "qwen3")
    NoRope().apply(package)
    LayerAttentionSizes().apply(package, rules=rules)
    return package


def test_query_heads_by_rule_are_the_layers_own():
    package = _unrotated(ALL_RULES)
    model = package.module("model.py")
    assert m.findall(model, _self_assign("n_heads", _entry("layer_n_heads")))
    (attention,) = m.findall(model, m.ClassDef(name=m.Name("Attention")))
    global_size = m.Attribute(
        value=m.Name("args"), attr=m.Name("head_dim") | m.Name("n_kv_heads") | m.Name("n_heads")
    )
    assert not m.findall(attention, global_size)


def test_heads_and_head_sizes_by_rule_without_rope_build_each_layer(tmp_path):
    args_module, model_module = _load(_unrotated(ALL_RULES), tmp_path, "gen_heads_rule")
    args = args_module.ModelArgs.from_hf_config(_qwen3())
    assert args.layer_n_heads == (6, 4, 6)
    assert args.layer_n_kv_heads == (3, 2, 3)
    assert args.layer_head_dims == (4, 8, 4)  # no RoPE table: two head sizes are fine
    model = model_module.Model(args)
    assert model.layers[0].attention.wq.weight.shape == (24, 32)
    assert model.layers[0].attention.wo.weight.shape == (32, 24)
    assert model.layers[1].attention.wq.weight.shape == (32, 32)
    assert model.layers[0].attention.wk.weight.shape == (12, 32)
