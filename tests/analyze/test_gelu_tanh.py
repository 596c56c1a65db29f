"""GELU's tanh approximation written out by hand in an activation module is named as such.

Bloom's MLP calls a module whose forward hands x to an autograd Function whose forward calls
a helper computing the approximation: the FFN is a gelu_mlp with `gelu_pytorch_tanh`, on a
renamed copy too. Other hand-written tanh maths (other constants) stays `custom`.
"""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.analyze.gelu_tanh import computes_gelu_tanh
from codegen.analyze.source import parse_file

APPROXIMATION = """
import math
import torch
from torch import nn


def helper(x):
    return x * 0.5 * (1.0 + torch.tanh({scale} * x * (1 + {cubic} * x * x)))


class Fn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return helper(x)


class Act(nn.Module):
    def forward(self, x):
        return Fn.apply(x)
"""


@pytest.mark.parametrize(
    ("scale", "cubic", "found"),
    [
        ("0.79788456", "0.044715", True),
        ("math.sqrt(2 / math.pi)", "0.044715", True),
        ("0.5", "0.044715", False),  # another scale: not GELU
        ("0.79788456", "0.1", False),
    ],
)
def test_the_constants_name_the_approximation(tmp_path, scale, cubic, found):
    path = tmp_path / "modeling_toy.py"
    path.write_text(APPROXIMATION.format(scale=scale, cubic=cubic))
    sf = parse_file(str(path))
    assert computes_gelu_tanh(sf, sf.classes["Act"]) is found


def test_bloom_ffn_is_a_tanh_gelu_mlp(tmp_path):
    for target in ("bloom", rename_model("bloom", "zorblax", str(tmp_path))[0]):
        ffn = analyze(target).ffn
        assert (ffn.kind, ffn.activation) == ("gelu_mlp", "gelu_pytorch_tanh")
