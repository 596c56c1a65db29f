"""AttentionScale: SDPA's scale from the config (granite multiplier, gemma2 inverse sqrt)."""

from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms import attention_scale
from codegen.transforms.attention_scale import AttentionScale
from codegen.transforms.testing import package_of


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_multiplier_is_passed_to_sdpa():
    package = _llama()
    AttentionScale().apply(package, field="attention_multiplier", form="multiplier")
    files = package.render()
    assert (
        "        self.head_dim = args.head_dim\n        self.scale = args.attention_multiplier\n"
    ) in files["model.py"]
    assert "scale=self.scale)" in files["model.py"]  # ruff format lays the call out later
    assert (
        "attention_multiplier: float = 1.0  # softmax scale (not head_dim ** -0.5)"
        in (files["args.py"])
    )
    assert "attention_multiplier=hf_config.attention_multiplier," in files["args.py"]


def test_inverse_sqrt_defaults_to_the_head_dim_so_defaults_keep_the_scale():
    package = _llama()
    AttentionScale().apply(package, field="query_pre_attn_scalar", form="inverse_sqrt")
    files = package.render()
    assert "self.scale = args.query_pre_attn_scalar**-0.5" in files["model.py"]
    assert (
        "query_pre_attn_scalar: float = 128  # softmax scale is its inverse square root"
        in (files["args.py"])
    )


def test_written_out_attention_uses_the_scale_in_the_scores():
    model = """
class Attention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.head_dim = args.head_dim

    def forward(self, q, k):
        scores = q @ k.transpose(2, 3) * self.head_dim**-0.5
        return scores
"""
    args = """
class ModelArgs:
    head_dim: int = 64
    tie_word_embeddings: bool = False

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(head_dim=hf_config.head_dim, tie_word_embeddings=False)
"""
    package = package_of({"model.py": model, "args.py": args})
    AttentionScale().apply(package, field="query_pre_attn_scalar", form="inverse_sqrt")
    files = package.render()
    assert "scores = q @ k.transpose(2, 3) * self.scale" in files["model.py"]
    assert "query_pre_attn_scalar: float = 64" in files["args.py"]
    assert (
        "cls(head_dim=hf_config.head_dim, query_pre_attn_scalar=hf_config.query_pre_attn_scalar, "
        "tie_word_embeddings=False)"
    ) in files["args.py"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "self.scaling = config.attention_multiplier  # Only diff",
            ("attention_multiplier", "multiplier"),
        ),
        (
            "self.scaling = config.query_pre_attn_scalar**-0.5",
            ("query_pre_attn_scalar", "inverse_sqrt"),
        ),
        ("self.scaling = 1.0", ("1.0", "constant")),
    ],
)
def test_detects_field_and_form(tmp_path, line, expected):
    path = tmp_path / "modeling_x.py"
    path.write_text(f"class A:\n    def __init__(self, config):\n        {line}\n")
    features = SimpleNamespace(source=SimpleNamespace(modeling=str(path)))
    assert attention_scale.detect(features) == expected


def test_constant_scale_is_written_into_the_sdpa_call():
    """gemma4's `self.scaling = 1.0` (its q/k norms set the scale): SDPA gets the number
    itself, no ModelArgs field."""
    import libcst.matchers as m

    package = _llama()
    before = package.render()["args.py"]
    AttentionScale().apply(package, field="1.0", form="constant")
    sdpa = m.Call(
        func=m.Attribute(value=m.Name("F"), attr=m.Name("scaled_dot_product_attention")),
        args=[m.ZeroOrMore(), m.Arg(value=m.Float("1.0"), keyword=m.Name("scale"))],
    )
    assert len(m.findall(package.module("model.py"), sdpa)) == 1
    assert package.render()["args.py"] == before
