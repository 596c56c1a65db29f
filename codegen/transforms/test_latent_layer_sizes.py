"""LatentLayerSizes: before/after on the deepseek_v3 reference (one RoPE table, and one per
layer type behind a window pattern), and what the package builds from a transformers
config with per-layer overrides of the latent sizes (`per_layer_config`), with an indexer
and a per-head output gate that follow each layer's sizes."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.indexed_attention import IndexedAttention
from codegen.transforms.latent_layer_sizes import LatentLayerSizes
from codegen.transforms.output_gate import AddOutputGate
from codegen.transforms.rope_per_layer_type import SetRopePerLayerType
from codegen.transforms.sliding_window import SetSlidingWindow

INDEXER = {
    "module": "indexer",
    "q_proj": "wq_b",
    "k_proj": "wk",
    "k_norm": "k_norm",
    "weights_proj": "weights_proj",
    "interleaved": False,
    "rope_dims": "leading",
    "k_norm_eps": 1e-06,
}


def _package(*, per_type: bool = False, extras: bool = False) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    if per_type:
        SetSlidingWindow().apply(package, mode="pattern")
        SetRopePerLayerType().apply(package)
    if extras:
        IndexedAttention().apply(package, indexer=INDEXER)
        AddOutputGate().apply(package, projection="g_proj", per_head=True)
    LatentLayerSizes().apply(package)
    return package


def _self_assign(attr: str, value) -> m.Assign:
    return m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attr)))],
        value=value,
    )


def test_each_attention_reads_its_layers_arguments():
    before = SourcePackage.from_directory(references_dir() / "deepseek_v3").module("model.py")
    of_layer = m.Call(func=m.Attribute(value=m.Name("args"), attr=m.Name("of_layer")))
    assert not m.findall(before, of_layer)
    package = _package()
    model = package.module("model.py")
    (attention,) = m.findall(model, m.ClassDef(name=m.Name("Attention")))
    # the first statement after super().__init__(): every size below is the layer's
    init = attention.body.body[1]
    assert m.matches(
        init.body.body[1],
        m.SimpleStatementLine(
            [
                m.Assign(
                    targets=[m.AssignTarget(m.Name("args"))],
                    value=m.Call(
                        func=m.Attribute(value=m.Name("args"), attr=m.Name("of_layer")),
                        args=[m.Arg(m.Name("layer_id"))],
                    ),
                )
            ]
        ),
    )
    built = m.Call(func=m.Name("Attention"), args=[m.Arg(m.Name("args")), m.Arg(m.Name())])
    assert len(m.findall(model, built)) == 1
    args = package.module("args.py")
    assert m.findall(args, m.FunctionDef(name=m.Name("of_layer")))


def test_per_type_tables_take_their_layers_rotated_width():
    model = _package(per_type=True).module("model.py")
    for table, sliding in (("rotary", "False"), ("sliding_rotary", "True")):
        width = m.Call(
            func=m.Attribute(value=m.Name("rope_dims"), attr=m.Name("get")),
            args=[m.Arg(m.Name(sliding)), m.Arg()],
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


def _deepseek_v3(**overrides):
    transformers = pytest.importorskip("transformers")
    return transformers.DeepseekV3Config(
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=16,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=16,
        kv_lora_rank=8,
        qk_nope_head_dim=6,
        qk_rope_head_dim=4,
        v_head_dim=5,
        vocab_size=64,
        n_routed_experts=4,
        n_group=2,
        topk_group=1,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        **overrides,
    )


SLIDING = {"num_attention_heads": 2, "q_lora_rank": 12, "kv_lora_rank": 10, "v_head_dim": 7}


def test_sizes_come_from_each_layers_config(tmp_path):
    args_module, model_module = _load(_package(), tmp_path, "gen_latent_sizes")
    args = args_module.ModelArgs.from_hf_config(_deepseek_v3(per_layer_config={2: SLIDING}))
    assert args.layer_n_heads == (4, 4, 2) and args.layer_kv_lora_ranks == (8, 8, 10)
    assert args.layer_q_lora_ranks == (16, 16, 12) and args.layer_v_head_dims == (5, 5, 7)
    model = model_module.Model(args)
    wide, narrow = model.layers[0].attention, model.layers[2].attention
    assert wide.wq_b.weight.shape == (4 * 10, 16) and narrow.wq_b.weight.shape == (2 * 10, 12)
    assert narrow.wkv_a.weight.shape == (10 + 4, 32)
    assert narrow.wkv_b.weight.shape == (2 * (6 + 7), 10)
    assert narrow.wo.weight.shape == (32, 2 * 7) and wide.wo.weight.shape == (32, 4 * 5)
    uniform = args_module.ModelArgs.from_hf_config(_deepseek_v3())
    assert uniform.layer_n_heads == (4, 4, 4) and uniform.layer_v_head_dims == (5, 5, 5)


def test_the_indexer_and_the_gate_follow_the_layers_sizes(tmp_path):
    args_module, model_module = _load(_package(extras=True), tmp_path, "gen_latent_extras")
    config = _deepseek_v3(
        per_layer_config={2: SLIDING}, index_n_heads=3, index_head_dim=8, index_topk=3
    )
    args = args_module.ModelArgs.from_hf_config(config)
    model = model_module.Model(args)
    narrow = model.layers[2].attention
    assert narrow.indexer.wq_b.weight.shape == (3 * 8, 12)  # reads this layer's q latent
    assert model.layers[0].attention.indexer.wq_b.weight.shape == (3 * 8, 16)
    assert narrow.wg.weight.shape == (2, 32)  # one gate per head of this layer
    torch = pytest.importorskip("torch")
    tokens = torch.randint(0, 64, (1, 7))
    assert model(tokens).shape == (1, 7, 64)


def test_other_overrides_and_one_table_for_two_widths_are_refused(tmp_path):
    args_module, _ = _load(_package(), tmp_path, "gen_latent_refusals")
    with pytest.raises(NotImplementedError, match="per_layer_config overrides"):
        args_module.ModelArgs.from_hf_config(
            _deepseek_v3(per_layer_config={1: {"intermediate_size": 8}})
        )
    with pytest.raises(NotImplementedError, match="one RoPE table"):
        args_module.ModelArgs.from_hf_config(
            _deepseek_v3(per_layer_config={1: {"qk_rope_head_dim": 8}})
        )


def test_each_table_is_as_wide_as_its_layers_rotated_part(tmp_path):
    args_module, model_module = _load(_package(per_type=True), tmp_path, "gen_latent_tables")
    args = args_module.ModelArgs(
        dim=32,
        n_layers=3,
        n_heads=4,
        vocab_size=64,
        q_lora_rank=16,
        kv_lora_rank=8,
        qk_nope_head_dim=6,
        qk_rope_head_dim=4,
        v_head_dim=5,
        hidden_dim=48,
        n_dense_layers=3,
        sliding_window=4,
        layer_types=("full_attention", "sliding_attention", "sliding_attention"),
        layer_qk_rope_head_dims=(4, 8, 8),
    )
    model = model_module.Model(args)
    assert model.rotary.dim == 4 and model.sliding_rotary.dim == 8
    assert model.layers[1].attention.wkv_a.weight.shape == (8 + 8, 32)
    with pytest.raises(NotImplementedError, match="one RoPE table"):
        args_module.ModelArgs(
            n_layers=3,
            sliding_window=4,
            layer_types=("full_attention", "sliding_attention", "sliding_attention"),
            layer_qk_rope_head_dims=(4, 8, 6),
        )
