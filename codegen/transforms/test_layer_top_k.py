"""LayerTopK: each MoE layer's top-k from a config field that is an int or a per-layer list."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import findall
from codegen.transforms.layer_top_k import LayerTopK


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    LayerTopK().apply(package, field="moe_topk")
    return package


def test_before_the_moe_reads_one_top_k():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    moe = _class(package.module("model.py"), "MoE")
    assert findall(moe, m.Attribute(m.Name("args"), m.Name("top_k")))
    assert not findall(package.module("args.py"), m.Name("top_k_of"))


def test_after_each_moe_takes_its_layers_top_k():
    package = _package()
    model = package.module("model.py")
    block = _class(model, "TransformerBlock")
    assert findall(block, m.Call(func=m.Name("MoE"), args=[m.Arg(), m.Arg(m.Name("layer_id"))]))
    moe = _class(model, "MoE")
    assert not findall(moe, m.Attribute(m.Name("args"), m.Name("top_k")))
    picked = m.Call(func=m.Attribute(m.Name("args"), m.Name("top_k_of")))
    assert findall(moe, m.Assign(value=picked))
    args = package.module("args.py")
    either = m.BinaryOperation(left=m.Name("int"), operator=m.BitOr())
    assert findall(args, m.AnnAssign(target=m.Name("top_k"), annotation=m.Annotation(either)))
    (helper,) = findall(args, m.FunctionDef(name=m.Name("per_layer")))
    assert [p.name.value for p in helper.params.params] == ["value", "n_layers", "field"]
    read = m.Call(func=m.Name("per_layer"), args=[m.Arg(), m.Arg(), m.Arg(m.SimpleString())])
    assert findall(args, m.Assign(targets=[m.AssignTarget(m.Name("top_ks"))], value=read))
    (call,) = findall(args, m.Call(func=m.Name("cls")))
    (passed,) = [a.value for a in call.args if a.keyword and a.keyword.value == "top_k"]
    assert m.matches(passed, m.Attribute(m.Name("hf_config"), m.Name("moe_topk")))


def test_a_list_gives_each_layer_its_entry_and_a_wrong_length_is_one_line(tmp_path):
    args_module, model_module = _load(_package(), tmp_path, "gen_layer_top_k")
    args = args_module.ModelArgs.from_hf_config(_config(moe_topk=[1, 3, 2]))
    assert args.top_k == [1, 3, 2]
    model = model_module.Model(args)
    assert [layer.moe.top_k for layer in model.layers] == [1, 3, 2]
    assert args_module.ModelArgs.from_hf_config(_config(moe_topk=2)).top_k == 2
    with pytest.raises(ValueError, match=r"moe_topk=\[1, 2\] has 2 entries.*list of 3") as err:
        args_module.ModelArgs.from_hf_config(_config(moe_topk=[1, 2]))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="layer 1: num_experts_per_tok 5 > num_experts 4"):
        args_module.ModelArgs.from_hf_config(_config(moe_topk=[1, 5, 2]))


def _class(module, name: str):
    (found,) = findall(module, m.ClassDef(name=m.Name(name)))
    return found


def _config(moe_topk):
    transformers = pytest.importorskip("transformers")
    config = transformers.Qwen3MoeConfig(
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=16,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=64,
        num_experts=4,
        num_experts_per_tok=2,
    )
    config.moe_topk = moe_topk  # the field the package reads, int or per-layer list
    return config


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
