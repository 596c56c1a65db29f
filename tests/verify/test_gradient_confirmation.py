"""A gradient mismatch counts once it recurs on a second long input (`run._confirmed`): a
ReLU kink fp32 rounding flips on one input is not a defect; a wrong package is wrong on any."""

from __future__ import annotations

import torch

from codegen.verify import run


def _item() -> run.Inputs:
    tokens = torch.randint(0, 50, (2, 24), generator=torch.Generator().manual_seed(0))
    tokens[:, list(run.PAD_POSITIONS)] = 7
    return run.Inputs("long", tokens, None)


def test_a_mismatch_seen_on_one_input_only_is_dropped(monkeypatch):
    first = _item()
    seen = []

    def mismatch_on_first_tokens(directory, house_model, adapter, item):
        seen.append(item.tokens)
        return "fc1.bias, relative diff 1.0e-02" if torch.equal(item.tokens, first.tokens) else None

    monkeypatch.setattr(run, "_gradient_mismatch", mismatch_on_first_tokens)
    assert run._confirmed(None, None, None, first, 50, "fc1.bias") is None
    (second,) = seen
    assert not torch.equal(second, first.tokens) and int(second.max()) < 50
    # the padding token stays where the first input had it (its row's gradient is checked)
    assert torch.equal(second[:, list(run.PAD_POSITIONS)], first.tokens[:, list(run.PAD_POSITIONS)])


def test_a_mismatch_that_recurs_is_reported_as_first_seen(monkeypatch):
    monkeypatch.setattr(run, "_gradient_mismatch", lambda *args: "w2.weight, relative diff 3e-01")
    assert run._confirmed(None, None, None, _item(), 50, "fc1.bias, first") == "fc1.bias, first"
