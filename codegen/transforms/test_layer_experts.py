"""LayerExperts: each MoE layer's router width and experts from a config field that is an int
or a per-layer list."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError, findall
from codegen.transforms.layer_experts import LayerExperts
from codegen.transforms.layer_top_k import LayerTopK

COUNT = m.Attribute(m.Name("args"), m.Name("num_experts"))
PER_LAYER = m.Call(func=m.Attribute(m.Name("args"), m.Name("experts_of")))


def _package(*, with_top_k: bool = False, top_k_after: bool = False) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    if with_top_k:
        LayerTopK().apply(package, field="moe_topk")
    LayerExperts().apply(package, field="num_experts")
    if top_k_after:
        LayerTopK().apply(package, field="moe_topk")
    return package


def test_before_the_moe_reads_one_count():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    moe = _class(package.module("model.py"), "MoE")
    assert len(findall(moe, COUNT)) == 2  # the router's width and the experts
    assert not findall(package.module("args.py"), m.Name("experts_of"))


def test_after_the_router_and_experts_take_their_layers_count():
    package = _package()
    model = package.module("model.py")
    block = _class(model, "TransformerBlock")
    assert findall(block, m.Call(func=m.Name("MoE"), args=[m.Arg(), m.Arg(m.Name("layer_id"))]))
    moe = _class(model, "MoE")
    assert not findall(model, COUNT)
    router = m.Call(
        func=m.Attribute(attr=m.Name("Linear")), args=[m.Arg(), m.Arg(PER_LAYER), m.ZeroOrMore()]
    )
    assert findall(moe, router)
    assert findall(moe, m.Call(func=m.Name("Experts"), args=[m.Arg(PER_LAYER), m.ZeroOrMore()]))
    either = m.BinaryOperation(left=m.Name("int"), operator=m.BitOr())
    args = package.module("args.py")
    assert findall(args, m.AnnAssign(target=m.Name("num_experts"), annotation=m.Annotation(either)))


def test_with_a_per_layer_top_k_the_moe_takes_its_layer_once():
    moe = _class(_package(with_top_k=True).module("model.py"), "MoE")
    init = next(f for f in moe.body.body if f.name.value == "__init__")
    assert [p.name.value for p in init.params.params] == ["self", "args", "layer_id"]


@pytest.mark.parametrize("top_k_after", [False, True])
def test_both_fields_read_through_one_helper_whichever_runs_first(top_k_after):
    package = _package(with_top_k=not top_k_after, top_k_after=top_k_after)
    args = package.module("args.py")
    helpers = [s for s in args.body if m.matches(s, m.FunctionDef())]
    assert [h.name.value for h in helpers].count("per_layer") == 1
    reads = findall(args, m.Call(func=m.Name("per_layer")))
    fields = [r.args[2].value.evaluated_value for r in reads if len(r.args) == 3]
    assert sorted(fields) == ["moe_topk", "num_experts"]
    # the int or the list passed on as the config holds it (checked by per_layer first)
    (call,) = findall(args, m.Call(func=m.Name("cls")))
    passed = {a.keyword.value: a.value for a in call.args if a.keyword}
    assert m.matches(passed["num_experts"], m.Attribute(m.Name("hf_config"), m.Name("num_experts")))
    assert m.matches(passed["top_k"], m.Attribute(m.Name("hf_config"), m.Name("moe_topk")))
    # one check per layer, each layer's top-k against its own count
    (loop,) = findall(args, m.For(target=m.Name("layer")))
    entry = m.Subscript(value=m.Name("expert_counts"))
    top_k = m.Subscript(value=m.Name("top_ks"))
    assert findall(
        loop,
        m.Comparison(
            left=top_k, comparisons=[m.ComparisonTarget(comparator=entry), m.ZeroOrMore()]
        ),
    )


def test_each_layers_top_k_is_checked_against_its_own_count(tmp_path):
    args_module, _ = _load(_package(with_top_k=True), tmp_path, "gen_layer_pairs")
    args = args_module.ModelArgs.from_hf_config(_config(num_experts=[2, 8, 2], moe_topk=[1, 4, 1]))
    assert [(args.top_k_of(i), args.experts_of(i)) for i in range(3)] == [(1, 2), (4, 8), (1, 2)]
    with pytest.raises(ValueError, match=r"layer 2: num_experts_per_tok 3 > num_experts 2") as err:
        args_module.ModelArgs.from_hf_config(_config(num_experts=[2, 8, 2], moe_topk=[1, 4, 3]))
    assert "\n" not in str(err.value)


def test_a_list_sizes_each_layer_and_a_wrong_length_is_one_line(tmp_path):
    args_module, model_module = _load(_package(with_top_k=True), tmp_path, "gen_layer_experts")
    args = args_module.ModelArgs.from_hf_config(_config(num_experts=[4, 6, 2], moe_topk=2))
    assert args.num_experts == [4, 6, 2]
    model = model_module.Model(args)
    widths = [layer.moe.gate.weight.shape[0] for layer in model.layers]
    stacked = [layer.moe.experts.w1.shape[0] for layer in model.layers]
    assert widths == stacked == [4, 6, 2]
    assert args_module.ModelArgs.from_hf_config(_config(num_experts=4, moe_topk=2)).num_experts == 4
    with pytest.raises(ValueError, match=r"num_experts=\[4, 6\] has 2 entries.*list of 3") as err:
        args_module.ModelArgs.from_hf_config(_config(num_experts=[4, 6], moe_topk=2))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="3 > num_experts 2"):
        args_module.ModelArgs.from_hf_config(_config(num_experts=[4, 6, 2], moe_topk=3))


def test_a_moe_without_a_linear_router_is_an_edit_error():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    package.files["model.py"] = package.files["model.py"].with_changes(body=[])
    with pytest.raises(EditError, match="no router"):
        LayerExperts().apply(package, field="num_experts")


def _class(module, name: str):
    (found,) = findall(module, m.ClassDef(name=m.Name(name)))
    return found


def _config(num_experts, moe_topk):
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
    # int or per-layer list: the class types num_experts int
    return SimpleNamespace(**{**config.to_dict(), "num_experts": num_experts, "moe_topk": moe_topk})


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
