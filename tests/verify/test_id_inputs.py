"""The optional id arguments verify draws (`id_inputs.py`): only those both forwards take and
HF hands to one of its tables, bounded by that table's rows, or token types of a mask block
(0/1); given on the long input only."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from codegen.verify.id_inputs import id_input_rows
from codegen.verify.run import make_inputs


class _HF(nn.Module):
    def __init__(self):
        super().__init__()
        self.words = nn.Embedding(50, 4)
        self.side = nn.Embedding(7, 4)
        self.wide = nn.Embedding(7, 5)  # too wide to add: HF cannot run with its ids

    def forward(
        self,
        input_ids=None,
        side_ids=None,
        lang_ids=None,
        wide_ids=None,
        hf_only_ids=None,
        token_type_ids=None,
        position_ids=None,
    ):
        h = self.words(input_ids)
        if side_ids is not None:
            h = h + self.side(side_ids)
        if wide_ids is not None:
            h = h + self.wide(wide_ids)
        if lang_ids is not None:  # not a table's rows: a per-sequence switch
            h = h * lang_ids.float().mean()
        if token_type_ids is not None:  # type-1 tokens see each other: one alone sees itself
            block = token_type_ids == 1
            h = h + (block & (block.sum(-1, keepdim=True) > 1)).float()[..., None]
        return SimpleNamespace(logits=h)


class _House(nn.Module):
    def forward(
        self,
        tokens,
        positions=None,
        side_ids=None,
        lang_ids=None,
        wide_ids=None,
        token_type_ids=None,
    ):
        return tokens


def test_only_ids_both_forwards_take_and_hf_looks_up_are_drawn():
    tokens = torch.ones(2, 5, dtype=torch.long)
    # lang_ids reaches no table and changes a lone token's logits, HF fails with wide_ids
    # (after looking them up), hf_only_ids is HF's alone; token_type_ids open a block
    assert id_input_rows(_HF(), _House(), tokens) == {"side_ids": 7, "token_type_ids": 2}


def test_the_long_input_gives_the_ids_and_the_tokens_stay_as_drawn():
    plain = make_inputs(50, 0, 3)
    short, long = make_inputs(50, 0, 3, {"side_ids": 7})
    assert short.extra == {} and set(long.extra) == {"side_ids"}
    ids = long.extra["side_ids"]
    assert ids.shape == long.tokens.shape and 0 <= int(ids.min()) and int(ids.max()) < 7
    assert len(ids.unique()) > 1
    assert torch.equal(short.tokens, plain[0].tokens) and torch.equal(long.tokens, plain[1].tokens)
