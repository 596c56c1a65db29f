"""HF's own fp32 noise (`run._hf_reference`): the second opinion runs eager attention and, where
the model takes it, its experts one by one. HF's grouped experts kernel falls back to
per-expert matmuls on weights it finds unaligned (a loaded checkpoint), so which of the two
an HF run takes is chance: the noise covers both."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from codegen.verify import run


class _Model:
    def __init__(self, shift: float):
        self.shift = shift

    def __call__(self, input_ids, position_ids=None, **_):
        return SimpleNamespace(logits=input_ids.float() + self.shift)


def _inputs():
    return [run.Inputs("short", torch.arange(4)[None], None)]


def test_the_second_opinion_runs_the_experts_eagerly(monkeypatch):
    calls = []

    def load(directory, dtype, attention=None, experts=None):
        calls.append((attention, experts))
        return _Model(1e-3 if experts else 0.0)

    monkeypatch.setattr(run, "_load_hf", load)
    _, _, (noise,) = run._hf_reference("unused", _inputs())
    assert calls == [(None, None), ("eager", "eager")]
    assert noise.max_abs_diff > 0


def test_a_model_without_an_experts_switch_keeps_the_attention_opinion(monkeypatch):
    calls = []

    def load(directory, dtype, attention=None, experts=None):
        calls.append((attention, experts))
        if experts:
            raise ValueError("this model does not support setting the experts implementation")
        return _Model(1e-3 if attention else 0.0)

    monkeypatch.setattr(run, "_load_hf", load)
    _, _, (noise,) = run._hf_reference("unused", _inputs())
    assert calls == [(None, None), ("eager", "eager"), ("eager", None)]
    assert noise.max_abs_diff > 0
