"""ActivationSparsity: the feed-forward's gate thresholded at mean + k * std of each row."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.activation_sparsity import GAUSSIAN_TOPK, ActivationSparsity
from codegen.transforms.edits import findall
from codegen.transforms.ffn_kind import SetFfnKind

PER_LAYER = {"field": "activation_sparsity_pattern", "per_layer": True}


def _package():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    SetFfnKind().apply(package, kind="geglu", activation="gelu_pytorch_tanh")
    ActivationSparsity().apply(package, sparsity=PER_LAYER)
    return package


def _method(module: cst.Module, cls: str, name: str) -> cst.FunctionDef:
    (found,) = findall(module, m.ClassDef(name=m.Name(cls)))
    (method,) = findall(found, m.FunctionDef(name=m.Name(name)))
    return method


def test_the_gate_is_thresholded_where_the_layer_is_sparse():
    package = _package()
    model = package.module("model.py")
    forward = _method(model, "FeedForward", "forward")
    # gate = self.w1(x); if self.k is not None: gate = gaussian_topk(gate, self.k)
    assert findall(
        forward,
        m.Assign(
            targets=[m.AssignTarget(m.Name("gate"))],
            value=m.Call(func=m.Attribute(m.Name("self"), m.Name("w1"))),
        ),
    )
    (guard,) = findall(forward, m.If(test=m.Comparison(left=m.Attribute(attr=m.Name("k")))))
    assert findall(guard, m.Call(func=m.Name("gaussian_topk")))
    # the activation now takes `gate`, and w1 is applied once
    assert findall(
        forward,
        m.Call(func=m.Attribute(attr=m.Name("gelu")), args=[m.Arg(m.Name("gate")), m.ZeroOrMore()]),
    )
    assert len(findall(forward, m.Attribute(m.Name("self"), m.Name("w1")))) == 1
    init = _method(model, "FeedForward", "__init__")
    assert findall(init, m.Param(name=m.Name("sparsity"), default=m.Float("0.0")))
    assert findall(init, m.Call(func=m.Attribute(attr=m.Name("icdf"))))
    assert findall(model, m.FunctionDef(name=m.Name("gaussian_topk")))
    block = _method(model, "TransformerBlock", "__init__")
    (call,) = findall(block, m.Call(func=m.Name("FeedForward")))
    sparsity = next(a for a in call.args if a.keyword and a.keyword.value == "sparsity")
    assert m.matches(
        sparsity.value,
        m.Subscript(value=m.Attribute(m.Name("args"), m.Name("activation_sparsity"))),
    )
    args = package.module("args.py")
    assert findall(args, m.AnnAssign(target=m.Name("activation_sparsity")))
    assert findall(
        args,
        m.Arg(
            keyword=m.Name("activation_sparsity"),
            value=m.Call(
                args=[
                    m.Arg(m.Attribute(m.Name("hf_config"), m.Name("activation_sparsity_pattern")))
                ]
            ),
        ),
    )


def test_the_shard_plan_docstring_says_the_ffn_stays_whole():
    doc = _package().module("parallelize.py").body[0].body[0].value.evaluated_value
    assert "the feed-forward replicated" in doc and "gate/up" not in doc


def test_the_package_computes_hf_gemma3n_mlp():
    """The package's FeedForward against HF's Gemma3nTextMLP, per layer: one sparse, one not."""
    from transformers import Gemma3nTextConfig
    from transformers.models.gemma3n.modeling_gemma3n import Gemma3nTextMLP

    files = _package().render()
    namespace: dict = {}
    model = files["model.py"]
    head = model.split("from codegen.layers")[0]
    source = head + model[model.index("def gaussian_topk") : model.index("class TransformerBlock")]
    exec(compile(source, "model.py", "exec"), namespace)
    config = Gemma3nTextConfig(
        hidden_size=16,
        intermediate_size=40,
        num_hidden_layers=2,
        activation_sparsity_pattern=[0.9, 0.0],
        hidden_activation="gelu_pytorch_tanh",
    )
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    for layer in (0, 1):
        hf = Gemma3nTextMLP(config, layer_idx=layer)
        ours = namespace["FeedForward"](16, 40, sparsity=config.activation_sparsity_pattern[layer])
        ours.w1.weight, ours.w2.weight, ours.w3.weight = (
            hf.gate_proj.weight,
            hf.down_proj.weight,
            hf.up_proj.weight,
        )
        for dtype in (torch.float32, torch.bfloat16):
            got = ours.to(dtype)(x.to(dtype))
            assert torch.equal(got, hf.to(dtype)(x.to(dtype))), (layer, dtype)


@pytest.mark.parametrize("sparsity", [0.95, 0.6])
def test_snippet_matches_hf_gaussian_topk(sparsity):
    from transformers import Gemma3nTextConfig
    from transformers.models.gemma3n.modeling_gemma3n import Gemma3nTextMLP

    namespace = {"torch": torch, "F": torch.nn.functional}
    exec(GAUSSIAN_TOPK, namespace)
    config = Gemma3nTextConfig(
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        activation_sparsity_pattern=[sparsity],
    )
    mlp = Gemma3nTextMLP(config)
    k = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(sparsity)).item()
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    for dtype in (torch.float32, torch.bfloat16):
        assert torch.equal(
            namespace["gaussian_topk"](x.to(dtype), k), mlp._gaussian_topk(x.to(dtype))
        )
