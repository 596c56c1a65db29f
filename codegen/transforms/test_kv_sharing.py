"""KvSharing: reusing layers take (k, v) stored by the last earlier layer of their kind."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms import _attention_edits as edits
from codegen.transforms.edits import InsertStatements, code_of, findall, run
from codegen.transforms.kv_sharing import KvSharing

SHARING = {"field": "num_kv_shared_layers", "input": "shared_kv_states"}


def _package():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    KvSharing().apply(package, sharing=SHARING)
    return package


def _method(module: cst.Module, cls: str, name: str) -> cst.FunctionDef:
    (found,) = findall(module, m.ClassDef(name=m.Name(cls)))
    (method,) = findall(found, m.FunctionDef(name=m.Name(name)))
    return method


def _self(attr: str) -> m.Attribute:
    return m.Attribute(value=m.Name("self"), attr=m.Name(attr))


def test_key_value_statements_move_under_the_reuse_branch():
    model = _package().module("model.py")
    forward = _method(model, "Attention", "forward")
    (branch,) = findall(forward, m.If(test=_self("reuses")))
    # reuse: `k, v = shared[self.kind]`
    assert findall(
        branch.body,
        m.Assign(
            value=m.Subscript(
                value=m.Name("shared"), slice=[m.SubscriptElement(m.Index(_self("kind")))]
            )
        ),
    )
    # else: the key and value projections, the key rotation, the store
    assert findall(branch.orelse, m.Call(func=_self("wk")))
    assert findall(branch.orelse, m.Call(func=_self("wv")))
    assert findall(
        branch.orelse,
        m.Assign(targets=[m.AssignTarget(m.Name("k"))], value=m.Call(func=m.Name("apply_rotary"))),
    )
    (store,) = findall(branch.orelse, m.If(test=_self("stores")))
    assert findall(store, m.AssignTarget(m.Subscript(value=m.Name("shared"))))
    # the query and its rotation stay outside, before the branch
    assert not findall(branch, m.Call(func=_self("wq")))
    assert findall(
        forward,
        m.Assign(targets=[m.AssignTarget(m.Name("q"))], value=m.Call(func=m.Name("apply_rotary"))),
    )
    assert findall(forward, m.Param(name=m.Name("shared")))


def test_a_reusing_layer_builds_no_key_value_modules():
    model = _package().module("model.py")
    init = _method(model, "Attention", "__init__")
    (guard,) = findall(
        init, m.If(test=m.UnaryOperation(operator=m.Not(), expression=_self("reuses")))
    )
    built = {t.target.attr.value for t in findall(guard, m.AssignTarget(target=m.Attribute()))}
    assert built == {"wk", "wv", "k_norm"}
    assert findall(init, m.AssignTarget(_self("stores")))
    assert findall(init, m.Param(name=m.Name("layer_id")))


def test_model_hands_every_layer_one_dict():
    package = _package()
    model = package.module("model.py")
    forward = _method(model, "Model", "forward")
    assert findall(forward, m.AnnAssign(target=m.Name("shared"), value=m.Dict(elements=[])))
    (loop,) = findall(forward, m.For())
    body = list(forward.body.body)
    after = body[body.index(loop) + 1]  # freed before the head, as HF's backbone returns first
    assert m.matches(after, m.SimpleStatementLine(body=[m.Del(m.Name("shared"))]))
    (call,) = findall(loop, m.Call(func=m.Name("layer")))
    assert m.matches(call.args[-1].value, m.Name("shared"))
    block = _method(model, "TransformerBlock", "forward")
    (attention,) = findall(block, m.Call(func=_self("attention")))
    assert m.matches(attention.args[-1].value, m.Name("shared"))
    args = package.module("args.py")
    assert findall(
        args,
        m.Arg(
            keyword=m.Name("kv_shared_layers"),
            value=m.Attribute(m.Name("hf_config"), m.Name("num_kv_shared_layers")),
        ),
    )


def test_inputs_freed_after_the_loop_share_one_line():
    """A second input the layers read (gemma's per-layer inputs) joins the `del` after the
    loop instead of a line of its own; a later `del` of something else is left alone."""
    package = _package()
    edits.free_after_layer_loop(package, "per_layer")
    forward = _method(package.module("model.py"), "Model", "forward")
    frees = [s for s in forward.body.body if m.matches(s, m.SimpleStatementLine(body=[m.Del()]))]
    assert [code_of(s.body[0].target) for s in frees] == ["shared, per_layer"]
    assert frees[0].trailing_whitespace.comment.value == edits.FREED


def test_inputs_freed_after_the_hidden_masks_line_still_share_one_line():
    """The hidden masks' `del` (written by a later transform, right after the loop) may come
    first: a further input still joins the inputs' line, not a third line of its own."""
    package = _package()
    hidden = "del future, window, hidden_window  " + edits.FREED
    run(package, "model.py", InsertStatements("Model", "forward", edits.is_layer_loop, hidden))
    edits.free_after_layer_loop(package, "per_layer")
    forward = _method(package.module("model.py"), "Model", "forward")
    frees = [s for s in forward.body.body if m.matches(s, m.SimpleStatementLine(body=[m.Del()]))]
    assert [code_of(s.body[0].target) for s in frees] == [
        "future, window, hidden_window",
        "shared, per_layer",
    ]


def test_an_input_that_would_overflow_the_line_gets_a_line_of_its_own():
    """Joined, the line would pass the packages' 100 columns and ruff would wrap it into a
    parenthesised tuple: the input gets a `del` line of its own below instead."""
    package = _package()
    edits.free_after_layer_loop(package, "rope, sliding_rope, window")
    edits.free_after_layer_loop(package, "per_layer")
    forward = _method(package.module("model.py"), "Model", "forward")
    frees = [s for s in forward.body.body if m.matches(s, m.SimpleStatementLine(body=[m.Del()]))]
    assert [code_of(s.body[0].target) for s in frees] == [
        "shared, rope, sliding_rope, window",
        "per_layer",
    ]
