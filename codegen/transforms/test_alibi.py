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
    masked = attention.index("scores.add_(future)")
    assert scores + 1 < masked
    assert "F.scaled_dot_product_attention" not in model  # SDPA's is_causal takes no bias
    block = "\n".join(_method(model, "TransformerBlock", "forward"))
    assert "self.attention(self.attention_norm(x), future, positions=positions)" in block
    assert "h = layer(h, future, positions=positions)" in "\n".join(
        _method(model, "Model", "forward")
    )


def test_the_causal_mask_is_built_once_per_forward_and_added_in_place():
    """Before, every layer built its (seq, seq) -inf/0 table from the boolean mask; now
    `Model.forward` builds the table once, in fp32 (the scores' dtype once the fp32 bias
    is added), and each layer adds it to its scores in place."""
    package = _package()
    NoRope().apply(package)
    Alibi().apply(package)
    model = package.render()["model.py"]
    attention = _method(model, "Attention", "forward")
    assert not any("torch.ones" in s or "torch.where" in s or "~" in s for s in attention)
    assert "scores.add_(future)" in attention
    forward = _method(model, "Model", "forward")
    built = [i for i, s in enumerate(forward) if s.startswith("future = ")]
    loop = next(i for i, s in enumerate(forward) if s.startswith("for layer in self.layers"))
    assert len(built) == 1 and built[0] < loop
    table = "torch.full((tokens.shape[1], tokens.shape[1]), float('-inf'), dtype=torch.float32"
    assert forward[built[0]].startswith(f"future = {table}")
    assert forward[built[0]].endswith(".triu(1)")
    assert forward[loop + 1] == "del future"  # not held while the head computes the logits


def test_the_generated_model_is_causal_and_its_in_place_fill_backpropagates(tmp_path):
    """The scaffolded model: a later token leaves earlier logits alone, and the backward
    through the in-place fill runs and matches an out-of-place fill's gradients. MPT's config
    gives every query head its own kv head, so the package repeats no k/v (`drop_kv_repeat`)."""
    import sys

    from codegen.models import load_spec
    from codegen.scaffold.build import Step
    from codegen.scaffold.pipeline import scaffold_into

    models = tmp_path / "models"
    scaffold_into(models, "llama", "alibi_toy", ["mpt"], [Step("no_rope"), Step("alibi")])
    spec = load_spec("alibi_toy", models)
    module = sys.modules[spec.model.__module__]
    args = spec.args(dim=32, n_layers=2, n_heads=4, vocab_size=50, hidden_dim=64)
    torch.manual_seed(0)
    model = module.Model(args)
    tokens = torch.randint(0, 50, (2, 7))
    logits = model(tokens)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 50
    torch.testing.assert_close(model(changed)[:, :-1], logits[:, :-1])
    logits.square().mean().backward()  # the in-place fill is safe for autograd

    # one attention against the same maths with the mask built and applied out of place
    attention, seq = model.layers[0].attention, 7
    x = torch.randn(2, seq, 32, requires_grad=True)
    positions = torch.arange(seq)[None]
    future = torch.full((seq, seq), float("-inf")).triu(1)
    out = attention(x, future, positions=positions)
    (grad,) = torch.autograd.grad(out.square().sum(), x)

    head_dim = attention.head_dim

    def expected(x):
        q, k, v = (
            w(x).view(2, seq, -1, head_dim).transpose(1, 2)
            for w in (attention.wq, attention.wk, attention.wv)
        )
        scores = q @ k.transpose(2, 3) * head_dim**-0.5 + attention.alibi(positions)
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        return attention.wo((probs @ v).transpose(1, 2).reshape(2, seq, -1))

    want = expected(x)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(grad, torch.autograd.grad(want.square().sum(), x)[0])


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
