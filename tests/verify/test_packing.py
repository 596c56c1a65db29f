"""Packed sequences: a row of documents with `cu_seqlens` gives HF's logits of each document
run alone; seeded defects (attention across the boundary, positions not restarting) are
named by document."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from codegen.layers.packing import document_bounds, forward_packed
from codegen.models import load_spec
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

LLAMA = load_spec("llama")


def run(model_class, config=None):
    spec = dataclasses.replace(LLAMA, model=model_class)
    config = config or tiny_config("llama")
    (result,) = verify_case(spec, Case("seeded", config), ["fp32"], gradients=False, export=False)
    return result


class AcrossBoundaries(LLAMA.model):
    """Positions restart per document, but attention runs over the whole row."""

    def forward(self, tokens, positions=None, cu_seqlens=None, max_seqlen=None):
        if cu_seqlens is not None:
            starts = torch.zeros(tokens.shape[1], dtype=torch.long)
            for start, end in document_bounds(cu_seqlens, tokens.numel()):
                starts[start:end] = start
            positions = (torch.arange(tokens.shape[1]) - starts)[None]
        return super().forward(tokens, positions)


class RowPositions(LLAMA.model):
    """cu_seqlens ignored: one causal sequence over the row."""

    def forward(self, tokens, positions=None, cu_seqlens=None, max_seqlen=None):
        return super().forward(tokens, positions)


def test_reference_packed_rows_match_hf_per_document():
    result = run(LLAMA.model)
    assert result.passed and result.packed_ok and result.packed_failure is None


@pytest.mark.parametrize("defect", [AcrossBoundaries, RowPositions])
def test_leaking_packed_attention_fails_naming_the_document(defect):
    result = run(defect)
    assert not result.passed and result.packed_ok is False
    assert result.packed_failure.startswith("packed document 1 ")


def test_sliding_window_applies_per_document():
    config = tiny_config("qwen3")
    config.use_sliding_window, config.sliding_window = True, 4
    config.layer_types = ["sliding_attention"] * config.num_hidden_layers
    spec = load_spec("qwen3")
    (result,) = verify_case(spec, Case("window", config), ["fp32"], gradients=False, export=False)
    assert result.passed and result.packed_ok


def test_bad_cu_seqlens_is_one_clear_error():
    with pytest.raises(ValueError, match="must run from 0 to 6 tokens"):
        document_bounds(torch.tensor([0, 4]), 6)
    with pytest.raises(ValueError, match="strictly increasing"):
        document_bounds(torch.tensor([0, 4, 4, 6]), 6)


def test_per_token_inputs_reach_each_document_as_its_own_slice():
    """`forward_packed`'s further inputs (token types) are cut like the tokens; None ones
    are not passed."""
    seen = []

    def model(tokens, **given):
        seen.append({"tokens": tokens.tolist(), **{k: v.tolist() for k, v in given.items()}})
        return torch.zeros(*tokens.shape, 1)

    tokens, types = torch.arange(5)[None], torch.tensor([[0, 1, 1, 0, 1]])
    out = forward_packed(model, tokens, None, torch.tensor([0, 2, 5]), types=types, other=None)
    assert out.shape == (1, 5, 1)
    assert seen == [
        {"tokens": [[0, 1]], "types": [[0, 1]]},
        {"tokens": [[2, 3, 4]], "types": [[1, 0, 1]]},
    ]
