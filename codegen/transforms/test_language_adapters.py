"""LanguageAdapters: before/after on a post-LN GELU-MLP package (BERT-style). Each block
builds an adapter per language as its FFN at the bottleneck width, and a norm of their own
only where args.adapter_norm is set; the FFN's residual sum passes `language_adapter` inside
the norm that follows it; Model.forward takes `lang_ids`, defaulting them to the default
language after the packed path, and hands them to every layer; args read the analysed
fields; the adapter maps every language's weights by key. The package runs: each sample
gets its own language's adapter."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest
import torch

from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import EditError
from codegen.transforms.language_adapters import LanguageAdapters
from codegen.transforms.testing import package_of

FOUND = {
    "owner": "output",
    "bank": "adapter_modules",
    "down": "dense1",
    "up": "dense2",
    "reduction": "adapter_reduction_factor",
    "languages": "languages",
    "default": "default_language",
    "own_norm": "adapter_layer_norm",
    "own_norm_module": "adapter_layer_norm",
    "reuse_norm": "adapter_reuse_layer_norm",
    "residual_after_norm": "ln_before_adapter",
}

MODEL = '''
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .args import ModelArgs


def forward_packed(model, tokens, positions, cu_seqlens):
    raise NotImplementedError


class FeedForward(nn.Module):
    """GELU MLP: w2(gelu(w1(x)))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=True)
        self.w2 = nn.Linear(hidden_dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x)))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)
        self.post_ffn_norm = nn.LayerNorm(args.dim, eps=args.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_ffn_norm(x + self.feed_forward(x))


class Model(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`cu_seqlens`: packed documents."""
        if cu_seqlens is not None:
            return forward_packed(self, tokens, positions, cu_seqlens)
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return h
'''

ARGS = """
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 8
    n_layers: int = 2
    hidden_dim: int = 16
    vocab_size: int = 11
    norm_eps: float = 1e-5
    tie_word_embeddings: bool = False

    @classmethod
    def from_hf_config(cls, hf_config) -> ModelArgs:
        return cls(
            dim=hf_config.hidden_size,
            tie_word_embeddings=hf_config.tie_word_embeddings,
        )
"""

ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "roberta.embeddings.word_embeddings.weight": "tok_embeddings.weight",
        "roberta.encoder.layer.{}.output.dense.weight": "layers.{}.feed_forward.w2.weight",
        "roberta.encoder.layer.{}.output.LayerNorm.weight": "layers.{}.post_ffn_norm.weight",
    }
"""


class _Features:
    class state_dict:  # noqa: N801 - the attribute path the transform reads
        prefix = "roberta.encoder.layer"


def _package(model: str = MODEL):
    return package_of(
        {"model.py": model.lstrip(), "args.py": ARGS.lstrip(), "state_dict_adapter.py": ADAPTER}
    )


def _applied():
    package = _package()
    LanguageAdapters().apply(package, _Features(), language_adapters=FOUND)
    return package


def _method(package, cls: str, name: str):
    method = find_method(package.module("model.py"), cls, name)
    assert method is not None, (cls, name)
    return method


def _attr(name: str) -> m.Attribute:
    return m.Attribute(value=m.Name("self"), attr=m.Name(name))


def test_before_the_package_has_no_adapters():
    assert "adapter" not in _package().render()["model.py"]


def test_block_builds_the_adapters_as_its_ffn_and_their_norm_on_the_switch():
    init = _method(_applied(), "TransformerBlock", "__init__")
    (bank,) = m.findall(init, m.Assign(targets=[m.AssignTarget(target=_attr("adapters"))]))
    assert m.findall(
        bank.value,
        m.Call(
            func=m.Name("FeedForward"),
            args=[
                m.Arg(value=m.Attribute(attr=m.Name("dim"))),
                m.Arg(m.Attribute(m.Name("args"), m.Name("adapter_dim"))),
            ],
        ),
    )
    (branch,) = m.findall(init, m.If(test=m.Attribute(attr=m.Name("adapter_norm"))))
    assert m.findall(branch, m.Assign(targets=[m.AssignTarget(target=_attr("adapter_norm"))]))


def test_the_ffn_sum_passes_the_adapters_inside_its_norm():
    package = _applied()
    forward = _method(package, "TransformerBlock", "forward")
    assert [p.name.value for p in forward.params.params] == ["self", "x", "lang_ids"]
    (norm,) = m.findall(forward, m.Call(func=_attr("post_ffn_norm")))
    assert m.matches(
        norm.args[0].value,
        m.Call(
            func=_attr("language_adapter"),
            args=[m.Arg(m.BinaryOperation()), m.Arg(m.Name("lang_ids"))],
        ),
    )
    method = _method(package, "TransformerBlock", "language_adapter")
    assert m.findall(method, m.Call(func=_attr("post_ffn_norm")))  # the reused norm


def test_model_defaults_the_language_after_the_packed_path_and_hands_it_down():
    forward = _method(_applied(), "Model", "forward")
    params = [p.name.value for p in forward.params.params]
    assert params[-1] == "lang_ids" and forward.params.params[-1].default is not None
    body = forward.body.body
    packed = next(i for i, s in enumerate(body) if m.findall(s, m.Name("forward_packed")))
    default = next(
        i
        for i, s in enumerate(body)
        if m.matches(s, m.If(test=m.Comparison(left=m.Name("lang_ids"))))
    )
    assert packed < default
    assert m.findall(
        forward, m.Call(func=m.Name("layer"), args=[m.Arg(), m.Arg(m.Name("lang_ids"))])
    )
    assert "`lang_ids`" in body[0].body[0].value.value  # documented in the docstring


def test_args_read_the_analysed_fields_and_the_adapter_maps_every_language():
    files = _applied().render()
    for kwarg in (
        "languages=tuple(hf_config.languages)",
        "default_language=hf_config.default_language",
        "adapter_dim=hf_config.hidden_size // hf_config.adapter_reduction_factor",
        "adapter_norm=hf_config.adapter_layer_norm",
        "adapter_reuse_norm=hf_config.adapter_reuse_layer_norm",
        "adapter_residual_after_norm=hf_config.ln_before_adapter",
    ):
        assert kwarg in files["args.py"]
    table = files["state_dict_adapter.py"]
    assert (
        '"roberta.encoder.layer.{}.output.adapter_modules.{*}.dense1.weight": '
        '"layers.{}.adapters.{*}.w1.weight"'
    ) in table
    assert '"roberta.encoder.layer.{}.output.adapter_layer_norm.bias"' in table


def _load(tmp_path, package, name: str):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for filename, text in package.render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(f"{name}.model"), importlib.import_module(f"{name}.args")
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize(
    "own_norm, reuse, after", [(False, True, True), (True, True, False), (False, False, True)]
)
def test_each_sample_runs_its_own_languages_adapter(tmp_path, own_norm, reuse, after):
    model_mod, args_mod = _load(tmp_path, _applied(), f"lang_pkg_{own_norm}_{reuse}_{after}")
    args = args_mod.ModelArgs(
        languages=("en", "de", "fr"),
        default_language="de",
        adapter_dim=4,
        adapter_norm=own_norm,
        adapter_reuse_norm=reuse,
        adapter_residual_after_norm=after,
    )
    torch.manual_seed(0)
    model = model_mod.Model(args)
    tokens = torch.randint(0, args.vocab_size, (3, 5))
    block = model.layers[0]
    x = torch.randn(3, 5, args.dim)
    out = block.language_adapter(x, torch.tensor([2, 0, 1]))
    normed = block.adapter_norm(x) if own_norm else block.post_ffn_norm(x) if reuse else x
    residual = normed if after else x
    for row, language in enumerate(("fr", "en", "de")):
        want = block.adapters[language](normed[row]) + residual[row]
        torch.testing.assert_close(out[row], want)
    # no lang_ids: every sample in the default language
    ids = torch.tensor([1, 1, 1])
    h = model.tok_embeddings(tokens)
    for layer in model.layers:
        h = layer(h, ids)
    torch.testing.assert_close(model(tokens), h)


def test_gated_ffn_or_no_normed_ffn_sum_is_an_edit_error():
    gated = MODEL.replace(
        "        self.w2 = nn.Linear(hidden_dim, dim, bias=True)\n",
        "        self.w2 = nn.Linear(hidden_dim, dim, bias=True)\n"
        "        self.w3 = nn.Linear(dim, hidden_dim, bias=True)\n",
    )
    with pytest.raises(EditError, match="gated"):
        LanguageAdapters().apply(_package(gated), _Features(), language_adapters=FOUND)
    pre_ln = MODEL.replace(
        "return self.post_ffn_norm(x + self.feed_forward(x))",
        "return x + self.feed_forward(self.post_ffn_norm(x))",
    )
    with pytest.raises(EditError, match="FFN residual sum"):
        LanguageAdapters().apply(_package(pre_ln), _Features(), language_adapters=FOUND)
