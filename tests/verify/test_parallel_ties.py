"""The shard-plan check leaves seeds whose one-device forward makes a top-k choice by
rounding: a sharded run sums in another order and may choose the other side of such a tie
(laguna's layer 2 router had two experts 6e-8 apart), which no plan can avoid."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from codegen.verify import parallel
from codegen.verify.parallel import TIE_MARGIN, ParallelResult, _top_k_margin


class _Router(nn.Module):
    """Top-2 of 4 scores; `gap` between the 2nd and the 3rd (method and function spelling)."""

    def __init__(self, gap: float):
        super().__init__()
        self.scores = nn.Parameter(torch.tensor([1.0, 0.9, 0.9 - gap, 0.1]))

    def forward(self, tokens, positions):
        return torch.topk(self.scores, 2).indices, self.scores.topk(1, dim=-1).indices


def _spec(gap: float):
    return SimpleNamespace(build=lambda config: (None, _Router(gap), None))


def test_a_tie_within_rounding_is_measured_through_either_spelling():
    for gap, tied in ((6e-8, True), (0.05, False)):
        spec = _spec(gap)
        state = spec.build(None)[1].state_dict()
        margin = _top_k_margin(spec, None, state, None, None, {})
        assert (margin < TIE_MARGIN) is tied
    assert torch.topk is torch._C._VariableFunctions.topk  # put back after the forward


def test_a_tied_seed_is_passed_over(monkeypatch):
    """Seed 0 ties, seed 1 does not: seed 1's weights are used and the result says so."""

    def drawn(spec, config, seed, rows, id_rows):
        router = _Router(6e-8 if seed == 0 else 0.05)
        return router.state_dict(), seed, None, {}

    monkeypatch.setattr(parallel, "_weights_and_inputs", drawn)
    monkeypatch.setattr(parallel, "_build", lambda spec, config, state: _loaded(state))
    result = ParallelResult("toy", "tp=2")
    _, seed, _, _ = parallel._untied_weights_and_inputs(None, None, 0, 1, result)
    assert (seed, result.reseeded) == (1, 1)


def _loaded(state):
    router = _Router(0)
    router.load_state_dict(state)
    return router
