"""Alibi: before/after on the llama reference (rotary taken out first by no_rope)."""

import ast

import pytest
import torch

from codegen.layers.alibi import AlibiBias, alibi_slopes
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.alibi import Alibi
from codegen.transforms.edits import EditError
from codegen.transforms.no_rope import NoRope


def _package():
    return SourcePackage.from_directory(references_dir() / "llama")


def _method(model: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(model)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_the_bias_is_added_to_the_scaled_scores_before_the_mask():
    before = _package().render()["model.py"]
    assert "AlibiBias" not in before and "F.scaled_dot_product_attention" in before
    package = _package()
    NoRope().apply(package)
    Alibi().apply(package)
    model = package.render()["model.py"]
    assert "from codegen.layers.alibi import AlibiBias" in model
    assert "self.alibi = AlibiBias(args.n_heads)" in _method(model, "Attention", "__init__")
    attention = _method(model, "Attention", "forward")
    scores = next(i for i, s in enumerate(attention) if s.startswith("scores = q @ k"))
    assert attention[scores + 1] == "scores = scores + self.alibi(positions)"
    masked = next(i for i, s in enumerate(attention) if "masked_fill" in s)
    assert scores + 1 < masked
    assert "F.scaled_dot_product_attention" not in model  # SDPA's is_causal takes no bias
    block = "\n".join(_method(model, "TransformerBlock", "forward"))
    assert "self.attention(self.attention_norm(x), positions=positions)" in block
    assert "h = layer(h, positions=positions)" in "\n".join(_method(model, "Model", "forward"))


def test_a_rotary_model_is_refused():
    with pytest.raises(EditError, match="no_rope"):
        Alibi().apply(_package())


@pytest.mark.parametrize(
    ("heads", "exponents"),
    [
        (8, [1, 2, 3, 4, 5, 6, 7, 8]),  # 2 ** (-8 k / 8)
        (4, [2, 4, 6, 8]),
        # not a power of two: the 4-head slopes, then odd steps of the 8-head ones
        (6, [2, 4, 6, 8, 1, 3]),
    ],
)
def test_slopes_follow_the_paper(heads, exponents):
    expected = torch.tensor([2.0**-e for e in exponents])
    torch.testing.assert_close(alibi_slopes(heads), expected, rtol=0, atol=0)


def test_the_bias_is_slope_times_key_position():
    positions = torch.tensor([[0, 1, 2], [5, 6, 7]])
    bias = AlibiBias(2)(positions)
    assert bias.shape == (2, 2, 1, 3) and bias.dtype == torch.float32
    # 2 heads: slopes 1/16 and 1/256; the second row starts at 5 (a shift: same softmax)
    torch.testing.assert_close(bias[1, 0, 0], torch.tensor([5.0, 6.0, 7.0]) / 16)
    torch.testing.assert_close(bias[0, 1, 0], torch.tensor([0.0, 1.0, 2.0]) / 256)
    scores = torch.zeros(2, 2, 3, 3)
    probs = torch.softmax(scores + bias, dim=-1)
    torch.testing.assert_close(probs[0], probs[1])
