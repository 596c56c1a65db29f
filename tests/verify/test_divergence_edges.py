"""Divergence location on models verify's switch settings can produce: with
`num_hidden_layers=0` no decoder layer runs, so the embedding stage has nothing to compare
(it must say so, not crash)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from codegen.verify.divergence import embedding_stage


class _NoLayers(nn.Module):
    """An embedding, an empty layer list and a head: what a zero-layer config builds."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.embed = nn.Embedding(8, 4)
        self.layers = nn.ModuleList()
        self.head = nn.Linear(4, 8)
        self.scale = scale

    def forward(self, tokens=None, input_ids=None, position_ids=None, positions=None):
        h = self.embed(tokens if tokens is not None else input_ids) * self.scale
        for layer in self.layers:
            h = layer(h)
        logits = self.head(h)
        return logits if tokens is not None else SimpleNamespace(logits=logits)


def test_no_decoder_layer_run_gives_no_embedding_verdict():
    tokens = torch.tensor([[1, 2, 3]])
    assert embedding_stage(_NoLayers(), _NoLayers(scale=2.0), tokens) is None


def test_a_first_layer_that_runs_is_compared():
    house, hf = _NoLayers(), _NoLayers(scale=2.0)
    hf.load_state_dict(house.state_dict(), strict=False)
    for model in (house, hf):
        model.layers.append(nn.Identity())
    divergence = embedding_stage(house, hf, torch.tensor([[1, 2, 3]]))
    assert divergence is not None and divergence.house_module.startswith("embedding")
