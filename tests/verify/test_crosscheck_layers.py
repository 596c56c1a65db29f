"""Which list of blocks the cross-check observes as the decoder stack (`observe._layers`)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from codegen.verify.crosscheck.observe import _layers


class Block(torch.nn.Module):
    def __init__(self, sublayers: int = 0):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        if sublayers:
            self.attentions = torch.nn.ModuleList(Block() for _ in range(sublayers))


class Model(torch.nn.Module):
    def __init__(self, stacks: dict[str, torch.nn.ModuleList]):
        super().__init__()
        for name, stack in stacks.items():
            setattr(self, name, stack)


def test_the_list_of_num_hidden_layers_blocks():
    model = Model(
        {
            "other": torch.nn.ModuleList([Block()]),
            "layers": torch.nn.ModuleList(Block() for _ in range(3)),
        }
    )
    assert _layers(model, SimpleNamespace(num_hidden_layers=3))[0] == "layers"


def test_a_config_counting_sublayers_gets_the_one_outer_list():
    """LongCat-Flash: 2 blocks of 2 attentions each, num_hidden_layers 4."""
    model = Model({"layers": torch.nn.ModuleList(Block(sublayers=2) for _ in range(2))})
    assert _layers(model, SimpleNamespace(num_hidden_layers=4))[0] == "layers"


def test_two_stacks_side_by_side_are_no_single_stack():
    """HRM's H and L modules: which one the config counts is not told by structure."""
    model = Model(
        {
            "high": torch.nn.ModuleList(Block() for _ in range(2)),
            "low": torch.nn.ModuleList(Block() for _ in range(2)),
        }
    )
    assert _layers(model, SimpleNamespace(num_hidden_layers=4)) == (None, None)
