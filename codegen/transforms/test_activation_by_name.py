"""ActivationByName: before/after on the llama, qwen2 and a gelu MLP FeedForward; routed
experts (the shared class, or a copy written for a fused gate/up) built with the config's
activation where HF's experts look it up by the same field, left alone where they
hard-code it; the one table of activations (the code the scaffold writes, the functions a
package looks names up in, HF's ACT2FN) agreeing; the shared Experts applying `act`."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._ffn_edits import ACTIVATIONS
from codegen.transforms._moe_edits import own_experts
from codegen.transforms.activation_by_name import ActivationByName
from codegen.transforms.ffn_kind import SetFfnKind
from codegen.transforms.fused_experts import FuseExperts
from codegen.transforms.testing import package_of


def _reference(name: str) -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / name)


def test_the_llama_feed_forward_applies_the_configs_activation():
    package = _reference("llama")
    before = package.render()
    assert "F.silu(self.w1(x))" in before["model.py"]
    assert 'FIXED_SETTINGS = {"hidden_act": "silu"}' in before["args.py"]
    ActivationByName().apply(package, activation="silu", field="hidden_act")
    model, args = package.render()["model.py"], package.render()["args.py"]
    assert "return self.w2(self.act(self.w1(x)) * self.w3(x))" in model
    assert "self.act = activation(hidden_act)" in model
    assert 'hidden_dim: int, bias: bool = False, hidden_act: str = "silu"' in model
    assert "bias=args.mlp_bias, hidden_act=args.hidden_act)" in model
    assert "from codegen.layers.activations import activation" in model
    assert '"""Gated FFN: w2(act(w1(x)) * w3(x)), act named by hidden_act."""' in model
    assert "F.silu" not in model
    assert '    hidden_act: str = "silu"  # the FFN activation' in args
    assert "hidden_act=hf_config.hidden_act," in args
    assert "FIXED_SETTINGS = {}" in args  # the pin goes (tidy drops the empty table)


def test_the_qwen2_activation_guard_goes():
    package = _reference("qwen2")
    assert 'hf_config.hidden_act != "silu"' in package.render()["args.py"]
    ActivationByName().apply(package, activation="silu", field="hidden_act")
    args = package.render()["args.py"]
    assert 'hf_config.hidden_act != "silu"' not in args
    assert "hidden_act=hf_config.hidden_act," in args


def test_a_gelu_mlp_follows_and_names_the_field_hf_reads():
    """gpt2's `ACT2FN[config.activation_function]`: an ungated MLP scaffolded with gelu_new."""
    package = _reference("llama")
    SetFfnKind().apply(package, kind="gelu_mlp", activation="gelu_new")
    assert 'F.gelu(self.w1(x), approximate="tanh")' in package.render()["model.py"]
    ActivationByName().apply(package, activation="gelu_new", field="activation_function")
    model = package.render()["model.py"]
    assert "return self.w2(self.act(self.w1(x)))" in model
    assert 'self.act = activation(hidden_act, "activation_function")' in model
    assert 'hidden_act: str = "gelu_new"' in model
    assert '"""MLP: w2(act(w1(x))), act named by hidden_act."""' in model
    assert "F.gelu" not in model


def test_routed_experts_that_hard_code_silu_keep_the_pin():
    package = _reference("qwen3_moe")
    before = package.render()
    ActivationByName().apply(package, activation="silu", field="hidden_act")
    assert package.render() == before


def test_routed_experts_looking_it_up_by_name_are_built_with_it():
    """qwen3_moe: the shared Experts gets `act`, the dense/shared FeedForward follows too."""
    package = _reference("qwen3_moe")
    before = package.render()
    assert "Experts(args.num_experts, args.dim, args.moe_hidden_dim)" in before["model.py"]
    assert 'hf_config.hidden_act != "silu"' in before["args.py"]  # the pin
    ActivationByName().apply(package, activation="silu", field="hidden_act", experts=True)
    model, args = package.render()["model.py"], package.render()["args.py"]
    assert "args.moe_hidden_dim, act=activation(args.hidden_act)" in model
    assert "from codegen.layers.experts import Experts" in model  # still the one class
    assert "return self.w2(self.act(self.w1(x)) * self.w3(x))" in model
    assert "F.silu" not in model
    assert 'hf_config.hidden_act != "silu"' not in args
    assert "hidden_act=hf_config.hidden_act," in args


def test_a_copy_of_the_experts_for_a_fused_gate_up_follows():
    """granitemoe-style: the fused-gate/up copy applies `self.act` and takes `act` as the
    shared class does."""
    package = _reference("qwen3_moe")
    FuseExperts().apply(package, layout="concat", transposed=False)
    assert "hidden = F.silu(gate) * up" in package.render()["model.py"]
    ActivationByName().apply(package, activation="silu", field="hidden_act", experts=True)
    model = package.render()["model.py"]
    assert "hidden = self.act(gate) * up" in model
    assert "act: Callable[[torch.Tensor], torch.Tensor] = F.silu" in model
    assert "        self.act = act\n" in model
    assert "`act` is the gate's activation" in model
    assert "from collections.abc import Callable" in model
    assert "args.moe_hidden_dim, act=activation(args.hidden_act)" in model
    assert 'hf_config.hidden_act != "silu"' not in package.render()["args.py"]


def test_a_copy_of_the_experts_applying_another_function_keeps_the_pin():
    """An Experts copy whose maths is not the silu it was copied with (a target's own
    activation written in its place) is not rewritten, and the package keeps its pin."""
    package = _reference("qwen3_moe")
    own_experts(package)
    files = package.render()
    assert (
        "hidden = F.silu(grouped_mm(rows, self.w1.mT, offs=offsets), inplace=True)"
        in (files["model.py"])
    )
    model = files["model.py"].replace("F.silu(grouped_mm(", "torch.tanh(grouped_mm(")
    model = model.replace(", offs=offsets), inplace=True)", ", offs=offsets))")
    package = package_of({**files, "model.py": model})
    before = package.render()
    ActivationByName().apply(package, activation="silu", field="hidden_act", experts=True)
    assert package.render() == before


def test_a_module_level_table_applying_it_keeps_the_pin():
    """deepseek_v4-style: silu applied outside any class (a module-level table) as well."""
    files = _reference("qwen3_moe").render()
    table = '\n\nSCORES = {"silu": lambda x: F.silu(x)}\n\n\nclass FeedForward'
    model = files["model.py"].replace("\n\nclass FeedForward", table, 1)
    package = package_of({**files, "model.py": model})
    before = package.render()
    ActivationByName().apply(package, activation="silu", field="hidden_act", experts=True)
    assert package.render() == before


def test_the_copy_of_the_shared_experts_is_plain_swiglu():
    """own_experts' copy drops the shared class's `act`: the transforms that edit the copy
    find silu written out."""
    import libcst.matchers as m

    package = _reference("qwen3_moe")
    own_experts(package)
    (experts,) = m.findall(package.module("model.py"), m.ClassDef(name=m.Name("Experts")))
    assert not m.findall(experts, m.Param(name=m.Name("act")))
    assert not m.findall(experts, m.Attribute(value=m.Name("self"), attr=m.Name("act")))
    model = package.render()["model.py"]
    assert "def __init__(self, num_experts: int, dim: int, hidden_dim: int):" in model
    assert "hidden = F.silu(grouped_mm(rows, self.w1.mT, offs=offsets), inplace=True)" in model
    assert "`act`" not in model


@pytest.mark.parametrize("name", ["gelu_new", "relu", "relu2", "silu"])
def test_the_shared_experts_apply_act(name):
    """Each expert computes w2(act(w1 x) * w3 x), as a loop over experts would, and so do
    the gradients (relu's backward reads its output, which the product must not overwrite)."""
    import torch

    from codegen.layers.activations import activation
    from codegen.layers.experts import Experts

    torch.manual_seed(0)
    experts = Experts(4, 8, 6, act=activation(name))
    for weight in experts.parameters():
        torch.nn.init.normal_(weight)
    x = torch.randn(5, 8)
    indices = torch.tensor([[0, 2], [1, 3], [2, 2], [3, 0], [1, 1]])
    weights = torch.rand(5, 2)
    act = activation(name)
    w1, w2, w3 = (w.detach().clone().requires_grad_() for w in (experts.w1, experts.w2, experts.w3))
    expected = torch.stack(
        [
            sum(
                weights[t, k] * w2[e] @ (act(w1[e] @ x[t]) * (w3[e] @ x[t]))
                for k, e in enumerate(indices[t].tolist())
            )
            for t in range(5)
        ]
    )
    out = experts(x, indices, weights)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)
    out.square().sum().backward()
    expected.square().sum().backward()
    for got, want in ((experts.w1, w1), (experts.w2, w2), (experts.w3, w3)):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-4, atol=1e-3)


def test_a_second_module_applying_the_activation_keeps_the_pin():
    model = (
        _reference("llama")
        .render()["model.py"]
        .replace(
            "        h = x + self.attention(",
            "        x = F.silu(x)\n        h = x + self.attention(",
        )
    )
    package = package_of({**_reference("llama").render(), "model.py": model})
    before = package.render()
    ActivationByName().apply(package, activation="silu", field="hidden_act")
    assert package.render() == before


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_one_table_the_written_code_the_runtime_function_and_hf_agree(name):
    import torch
    import torch.nn.functional as F  # noqa: N812 (the name the templates use)
    from transformers.activations import ACT2FN

    from codegen.layers.activations import ACTIVATIONS as FUNCTIONS

    x = torch.randn(64, dtype=torch.float64) * 4
    written = eval(ACTIVATIONS[name].format("x"), {"F": F, "torch": torch, "x": x})  # noqa: S307
    torch.testing.assert_close(written, FUNCTIONS[name](x))
    torch.testing.assert_close(FUNCTIONS[name](x), ACT2FN[name](x), rtol=1e-6, atol=1e-6)


def test_a_name_outside_the_table_is_refused_in_one_line():
    from codegen.layers.activations import activation

    with pytest.raises(NotImplementedError) as refused:
        activation("gelu_10", "activation_function")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("activation_function='gelu_10' is not supported")
    assert "gelu_new" in message and "relu2" in message


def test_a_docstring_too_long_for_one_line_names_the_field_on_the_next():
    """A clamped formula does not fit on the class's line with the field named: the naming
    goes on a line of its own (a formatter cannot wrap a docstring; a `noqa` would be
    needed), and a second pass leaves it as it is."""
    from codegen.transforms.clamped_ffn import ClampFeedForward

    package = _reference("llama")
    ClampFeedForward().apply(package, limit="swiglu_limit")
    ActivationByName().apply(package, activation="silu", field="hidden_act")
    model = package.render()["model.py"]
    assert (
        '    """Gated FFN: w2(act(w1(x).clamp(max=limit)) * w3(x).clamp(-limit, limit)),\n'
        "    act named by hidden_act.\n"
        '    """\n'
    ) in model
    assert "noqa" not in model
    ActivationByName().apply(package, activation="silu", field="hidden_act")
    assert package.render()["model.py"] == model
