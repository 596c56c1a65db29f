"""RecurrentStacks and StackKeys: before/after on the llama reference. The model's layer list
and final norm move into a `LayerStack` built twice; the forward runs the inner stack
`inner_cycles` times per cycle (gradients through the last runs only), then the outer one;
the adapter maps both stacks and the initial state; the shard plan is placed under both."""

from __future__ import annotations

import ast
import importlib
import sys
from types import SimpleNamespace

import libcst as cst
import libcst.matchers as m
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.recurrent_stacks import RecurrentStacks
from codegen.transforms.shard_plan import SyncShardPlan
from codegen.transforms.stack_keys import StackKeys

STACKS = {
    "backbone": "model",
    "inner": "L_module",
    "outer": "H_module",
    "layers": "layers",
    "norm": "final_norm",
    "layer_count": "num_layers_per_stack",
    "cycles": "H_cycles",
    "inner_cycles": "L_cycles",
    "grad_cycles": "L_bp_cycles",
    "init": "z_L_init",
}
# the analysis's layer prefix: the inner stack's
FEATURES = SimpleNamespace(state_dict=SimpleNamespace(prefix="model.L_module.layers"))


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    RecurrentStacks().apply(package, FEATURES, stacks=STACKS)
    return package


def _attr(name: str) -> m.Attribute:
    return m.Attribute(value=m.Name("self"), attr=m.Name(name))


def _built(name: str, cls: str) -> m.Assign:
    return m.Assign(targets=[m.AssignTarget(target=_attr(name))], value=m.Call(func=m.Name(cls)))


def test_before_the_reference_runs_one_stack():
    package = SourcePackage.from_directory(references_dir() / "llama")
    init = find_method(package.module("model.py"), "Model", "__init__")
    assert m.findall(init, m.Assign(targets=[m.AssignTarget(target=_attr("layers"))]))
    assert not m.findall(package.module("model.py"), m.ClassDef(name=m.Name("LayerStack")))


def test_model_builds_two_stacks_and_the_initial_state():
    module = _package().module("model.py")
    init = find_method(module, "Model", "__init__")
    assert m.findall(init, _built("inner", "LayerStack"))
    assert m.findall(init, _built("outer", "LayerStack"))
    assert not m.findall(init, m.Assign(targets=[m.AssignTarget(target=_attr("layers"))]))
    assert not m.findall(init, m.Assign(targets=[m.AssignTarget(target=_attr("norm"))]))
    buffer = m.Call(
        func=_attr("register_buffer"), args=[m.Arg(m.SimpleString('"inner_init"')), m.Arg()]
    )
    assert m.findall(init, buffer)
    stack = find_method(module, "LayerStack", "__init__")
    assert m.findall(stack, m.Assign(targets=[m.AssignTarget(target=_attr("layers"))]))
    assert m.findall(stack, m.Assign(targets=[m.AssignTarget(target=_attr("norm"))]))


def test_forward_nests_the_cycles_and_cuts_early_inner_runs_from_autograd():
    forward = find_method(_package().module("model.py"), "Model", "forward")
    (outer,) = [loop for loop in m.findall(forward, m.For()) if m.findall(loop.body, m.For())]
    (inner,) = m.findall(outer.body, m.For())
    (context,) = m.findall(inner.body, m.With())
    assert m.findall(context.items[0], m.Attribute(attr=m.Name("set_grad_enabled")))
    assert m.findall(context.body, m.Call(func=_attr("inner")))
    assert m.findall(outer.body, m.Assign(value=m.Call(func=_attr("outer"))))
    assert not m.findall(forward, m.Call(func=_attr("norm")))


def test_args_and_adapter_rows():
    rendered = _package().render()
    for kwarg in (
        "n_layers=hf_config.num_layers_per_stack",
        "cycles=hf_config.H_cycles",
        "inner_cycles=hf_config.L_cycles",
        "inner_grad_cycles=tuple(hf_config.L_bp_cycles)",
    ):
        assert kwarg in rendered["args.py"]
    adapter = rendered["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.self_attn.q_proj.weight": "inner.layers.{}.attention.wq.weight"'
        in adapter
    )
    assert '"model.z_L_init": "inner_init"' in adapter
    assert '"model.norm.weight": "norm.weight"' not in adapter


def test_stack_keys_copies_the_aligned_rows_to_the_other_stack():
    package = _package()
    # as align_hf_keys leaves them: the analysed stack's checkpoint keys
    package.edit(
        "state_dict_adapter.py",
        _Rename("model.layers.", "model.L_module.layers."),
    )
    StackKeys().apply(package, FEATURES, stacks=STACKS)
    adapter = package.render()["state_dict_adapter.py"]
    assert (
        '"model.L_module.layers.{}.mlp.up_proj.weight": "inner.layers.{}.feed_forward.w3.weight"'
        in adapter
    )
    assert (
        '"model.H_module.layers.{}.mlp.up_proj.weight": "outer.layers.{}.feed_forward.w3.weight"'
        in adapter
    )


def test_shard_plan_is_placed_under_both_stacks():
    package = _package()
    SyncShardPlan().apply(package)
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(package.render()["parallelize.py"]).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    plan = values["PLAN"]
    for stack in ("inner", "outer"):
        assert plan[f"{stack}.layers.*.attention.wq"] == "colwise"
        assert plan[f"{stack}.layers.*.feed_forward.w2"] == "rowwise"
    assert "layers.*.attention.wq" not in plan
    assert values["FSDP_BLOCKS"] == ("inner.layers.*", "outer.layers.*")


def test_the_package_runs_and_only_the_last_inner_runs_carry_gradients(tmp_path):
    package = _package()
    name = "recurrent_pkg"
    (tmp_path / name).mkdir()
    for filename, text in package.render().items():
        (tmp_path / name / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module(f"{name}.args")
        model_module = importlib.import_module(f"{name}.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(
        dim=16,
        n_layers=1,
        n_heads=2,
        n_kv_heads=2,
        head_dim=8,
        hidden_dim=32,
        vocab_size=32,
        cycles=2,
        inner_cycles=3,
        inner_grad_cycles=(2,),
    )
    torch.manual_seed(0)
    model = model_module.Model(args)
    assert model.inner_grad_runs == [1, 2]
    runs = []
    model.inner.register_forward_hook(lambda mod, inp, out: runs.append(out.requires_grad))
    model(torch.randint(0, 32, (1, 4))).sum().backward()
    # cycle 0: the last of 3 runs carries gradients; cycle 1: the last 2
    assert runs == [False, False, True, False, True, True]


class _Rename(cst.CSTTransformer):
    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new

    def leave_SimpleString(self, original, updated):
        return updated.with_changes(value=updated.value.replace(self.old, self.new))
