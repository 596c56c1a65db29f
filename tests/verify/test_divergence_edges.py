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


class _Block(nn.Module):
    def __init__(self, nudge: float):
        super().__init__()
        self.linear = nn.Linear(32, 32)
        self.scale = nn.Parameter(torch.rand(32) + 0.5)  # the block holds a weight of its own
        self.nudge = nudge

    def forward(self, h):
        return h + self.linear(h * self.scale) * self.nudge


class _Stack(nn.Module):
    """Three residual blocks and a head; `nudge` scales block 1's update (a tiny defect)."""

    def __init__(self, nudge: float = 1.0):
        super().__init__()
        self.embed = nn.Embedding(16, 32)
        self.layers = nn.ModuleList(_Block(nudge if i == 1 else 1.0) for i in range(3))
        self.head = nn.Linear(32, 16)
        self.config = SimpleNamespace(vocab_size=16)

    def forward(self, tokens=None, input_ids=None, position_ids=None, positions=None):
        h = self.embed(tokens if tokens is not None else input_ids)
        for layer in self.layers:
            h = layer(h)
        logits = self.head(h)
        return logits if tokens is not None else SimpleNamespace(logits=logits)


def _stacks(nudge: float):
    torch.manual_seed(0)
    hf = _Stack()
    house = _Stack(nudge=nudge)
    house.load_state_dict(hf.state_dict())
    return house, hf


def test_bf16_weights_pair_only_through_the_fp32_pairs():
    """Rounded to bf16 the package's weights are no longer HF's fp32 values: the pairs are
    found before the cast (as verify's _locate does) and still name the stage."""
    from codegen.verify.divergence import find_divergence, module_pairs

    house, hf = _stacks(nudge=1.5)
    pairs = module_pairs(house, hf)
    assert ("layers.1.linear", "layers.1.linear") in pairs
    house.to(torch.bfloat16)
    assert ("layers.1.linear", "layers.1.linear") not in module_pairs(house, hf)
    noise = _Stack().to(torch.bfloat16)
    noise.load_state_dict(hf.state_dict())
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    found = find_divergence(house, hf, tokens, 1e-4, hf_noise_model=noise, pairs=pairs)
    assert found is not None and found.house_module == "layers.1" and found.growth is None


def test_an_excess_under_every_stage_bound_is_still_named():
    """A defect a few times HF's own bf16 noise: no stage passes the per-stage multiple,
    the stage that grows the excess most is named, marked as such."""
    from codegen.verify.divergence import find_divergence, module_pairs

    house, hf = _stacks(nudge=1.03)
    pairs = module_pairs(house, hf)
    house.to(torch.bfloat16)
    noise = _Stack().to(torch.bfloat16)
    noise.load_state_dict(hf.state_dict())
    tokens = torch.tensor([[1, 2, 3, 4, 5]])
    found = find_divergence(
        house, hf, tokens, 1e-4, hf_noise_model=noise, pairs=pairs, noise_multiple=1e3
    )
    assert found is not None and found.house_module == "layers.1"
    assert found.growth is not None and "grows the excess" in str(found)


def test_a_setting_of_width_zero_is_skipped_as_degenerate():
    """A config branch on `hidden_size != 0` (youtu's initializer_range) makes hidden_size=0
    a switch setting; transformers builds that model, but every logit is 0 on both sides:
    verify skips it, saying why, instead of failing a comparison of nothing."""
    from codegen.models import load_spec
    from codegen.verify.run import DEGENERATE, Case, verify_case
    from codegen.verify.tiny_config import tiny_config

    config = tiny_config("llama")
    config.hidden_size = 0
    results = verify_case(load_spec("llama"), Case("llama+hidden_size=0", config, True), ["fp32"])
    assert [r.skipped for r in results] == [DEGENERATE]


def test_a_router_picking_other_experts_is_said_so_not_an_infinite_diff():
    from codegen.verify.divergence import Divergence, _rows_picked_apart

    weights = torch.rand(4, 2)
    house = [torch.zeros(4, 8), weights, torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])]
    hf = [torch.zeros(4, 8), weights, torch.tensor([[0, 1], [2, 5], [4, 5], [7, 6]])]
    assert _rows_picked_apart(house, hf) == (2, 4)
    assert _rows_picked_apart(house, [house[0], weights, house[2].clone()]) is None
    line = str(
        Divergence(
            "layers.1.moe.gate", "model.layers.1.mlp.gate", float("inf"), rows_picked_apart=(2, 4)
        )
    )
    assert line == (
        "layers.1.moe.gate (HF model.layers.1.mlp.gate),"
        " picks other indices than HF's on 2 of 4 rows"
    )
