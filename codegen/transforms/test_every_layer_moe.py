"""EveryLayerMoe: before/after on the qwen3_moe and deepseek_v3 references."""

import libcst as cst
import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError, findall
from codegen.transforms.every_layer_moe import EveryLayerMoe

_IS_MOE = m.Attribute(value=m.Name("self"), attr=m.Name("is_moe"))


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def _class(module: cst.Module, name: str) -> cst.ClassDef | None:
    return next((c for c in findall(module, m.ClassDef(name=m.Name(name)))), None)


def _method(cls: cst.ClassDef, name: str) -> cst.FunctionDef | None:
    return next(iter(findall(cls, m.FunctionDef(name=m.Name(name)))), None)


def _plan_strings(module: cst.Module, name: str) -> set[str]:
    (assign,) = findall(
        module, m.Assign(targets=[m.AssignTarget(m.Name(name))]) | m.AnnAssign(target=m.Name(name))
    )
    return {s.evaluated_value for s in findall(assign.value, m.SimpleString())}


@pytest.mark.parametrize("reference", ["qwen3_moe", "deepseek_v3"])
def test_the_block_builds_and_calls_the_moe_alone(reference):
    package = _package(reference)
    block = _class(package.module("model.py"), "TransformerBlock")
    assert findall(block, m.If(test=_IS_MOE)) and findall(block, m.IfExp(test=_IS_MOE))
    EveryLayerMoe().apply(package)
    model = package.module("model.py")
    block = _class(model, "TransformerBlock")
    assert not findall(block, _IS_MOE)
    assert not findall(block, m.Attribute(value=m.Name("self"), attr=m.Name("feed_forward")))
    build = m.Assign(
        targets=[m.AssignTarget(m.Attribute(m.Name("self"), m.Name("moe")))],
        value=m.Call(func=m.Name("MoE")),
    )
    assert len(findall(_method(block, "__init__"), build)) == 1
    # the settled local `ffn = self.moe` is read as `self.moe` itself
    forward = _method(block, "forward")
    assert not findall(forward, m.Name("ffn"))
    moe_call = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("moe")))
    assert len(findall(forward, moe_call)) == 1
    args = _class(package.module("args.py"), "ModelArgs")
    assert _method(args, "is_moe_layer") is None
    adapter = package.module("state_dict_adapter.py")
    houses = {s.evaluated_value for s in findall(adapter, m.SimpleString())}
    assert not any(".feed_forward." in key for key in houses)
    assert "layers.{}.moe.gate.weight" in houses
    optional = _plan_strings(package.module("parallelize.py"), "OPTIONAL")
    assert not any(key.startswith(("layers.*.moe.", "layers.*.feed_forward.")) for key in optional)


def test_the_dense_class_goes_unless_something_else_builds_it():
    package = _package("qwen3_moe")
    EveryLayerMoe().apply(package)
    assert _class(package.module("model.py"), "FeedForward") is None
    # deepseek_v3's shared experts are a FeedForward: the class stays
    package = _package("deepseek_v3")
    EveryLayerMoe().apply(package)
    assert _class(package.module("model.py"), "FeedForward") is not None


def test_num_experts_no_longer_says_zero_means_dense():
    package = _package("qwen3_moe")
    EveryLayerMoe().apply(package)
    (field,) = findall(
        package.module("args.py"), m.SimpleStatementLine(body=[m.AnnAssign(m.Name("num_experts"))])
    )
    assert field.trailing_whitespace.comment.value == "# routed experts in each layer's MoE block"


def test_an_emptied_optional_set_reads_as_a_plan_without_one():
    package = _package("qwen3_moe")
    EveryLayerMoe().apply(package)
    plan = package.module("parallelize.py")
    (line,) = findall(plan, m.SimpleStatementLine(body=[m.AnnAssign(m.Name("OPTIONAL"))]))
    assert line.body[0].value.deep_equals(cst.parse_expression("frozenset()"))
    assert not _plan_strings(plan, "OPTIONAL")


def test_a_package_without_a_dense_choice_is_an_error():
    with pytest.raises(EditError):
        EveryLayerMoe().apply(_package("llama"))


def test_a_block_already_without_the_choice_is_left_alone():
    package = _package("qwen3_moe")
    EveryLayerMoe().apply(package)
    settled = package.render()
    EveryLayerMoe().apply(package)
    assert package.render() == settled
