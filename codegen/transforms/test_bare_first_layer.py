"""BareFirstLayer: layer 0's attention input goes unnormed, the other layers keep the norm."""

import pytest
import torch
from torch import nn

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.bare_first_layer import BareFirstLayer
from codegen.transforms.edits import EditError


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_before_every_layer_norms_its_attention_input():
    model = _llama().render()["model.py"]
    assert "        self.attention_norm = RMSNorm(args.dim, args.norm_eps)\n" in model
    assert "nn.Identity()" not in model


def test_after_layer_zero_builds_an_identity():
    package = _llama()
    BareFirstLayer().apply(package, sublayers=("attention",))
    model = package.render()["model.py"]
    assert (
        "self.attention_norm = RMSNorm(args.dim, args.norm_eps) if layer_id != 0 else nn.Identity()"
        in model
    )
    assert "self.ffn_norm = RMSNorm(args.dim, args.norm_eps)\n" in model  # untouched
    assert "TransformerBlock(args, i) for i in range(args.n_layers)" in model


def test_the_built_model_has_no_layer_zero_norm_weight():
    package = _llama()
    BareFirstLayer().apply(package, sublayers=("attention",))
    namespace: dict = {}
    code = package.render()["model.py"]
    body = code[code.index("class TransformerBlock") : code.index("class Model")]

    class Args:
        dim, norm_eps, hidden_dim, mlp_bias = 8, 1e-6, 16, False

    namespace.update(
        torch=torch,
        nn=nn,
        RMSNorm=lambda dim, eps: nn.RMSNorm(dim, eps=eps),
        Attention=lambda args: nn.Identity(),
        FeedForward=lambda *a, **k: nn.Identity(),
        ModelArgs=Args,
    )
    exec("from __future__ import annotations\n" + body, namespace)
    blocks = [namespace["TransformerBlock"](Args(), i) for i in range(2)]
    assert "attention_norm.weight" not in blocks[0].state_dict()
    assert "attention_norm.weight" in blocks[1].state_dict()


def test_an_unknown_sublayer_is_refused():
    with pytest.raises(EditError):
        BareFirstLayer().apply(_llama(), sublayers=("router",))
