"""LognAttention: before/after on the llama reference."""

import ast

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.logn_attention import LognAttention

LOGN = {
    "beta": 'hf_config.rope_parameters["llama_4_scaling_beta"]',
    "period": 'hf_config.rope_parameters["original_max_position_embeddings"]',
    "offset": 0.0,
}


def _package():
    return SourcePackage.from_directory(references_dir() / "llama")


def _method(model: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(model)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_the_rotated_queries_are_scaled_per_position():
    assert "q_scale" not in _package().render()["model.py"]
    package = _package()
    LognAttention().apply(package, logn=LOGN)
    files = package.render()
    model = files["model.py"]
    attention = _method(model, "Attention", "forward")
    rotate = attention.index("q, k = (apply_rotary(q, cos, sin), apply_rotary(k, cos, sin))")
    assert attention[rotate + 1] == "q = q * q_scale.to(q.dtype)"
    forward = _method(model, "Model", "forward")
    scale = next(s for s in forward if s.startswith("q_scale = "))
    assert "torch.log1p(torch.floor(positions / self.args.logn_period))" in scale
    assert forward.index(scale) == forward.index("rope = self.rotary(positions)") + 1
    assert "h = layer(h, rope, q_scale=q_scale)" in "\n".join(forward)
    block = "\n".join(_method(model, "TransformerBlock", "forward"))
    assert "self.attention(self.attention_norm(x), rope, q_scale=q_scale)" in block
    args = files["args.py"]
    assert 'logn_beta=hf_config.rope_parameters["llama_4_scaling_beta"]' in args
    assert 'logn_period=hf_config.rope_parameters["original_max_position_embeddings"]' in args


def test_an_offset_is_added_to_the_positions():
    package = _package()
    LognAttention().apply(package, logn={**LOGN, "offset": 1.0})
    assert "torch.floor((positions + 1) / self.args.logn_period)" in package.render()["model.py"]


def test_missing_fields_are_an_error():
    with pytest.raises(EditError):
        LognAttention().apply(_package(), logn={"beta": None, "period": None})


def test_llama4_form_scales_nope_layers_by_token_index():
    # Llama4's temperature: token index (not position ids) + 1, on layers without RoPE only
    package = _package()
    logn = {
        "beta": "hf_config.attn_scale",
        "period": "hf_config.floor_scale",
        "offset": 1.0,
        "positions": "index",
        "layers": "nope",
    }
    LognAttention().apply(package, logn=logn)
    model = package.render()["model.py"]
    attention = _method(model, "Attention", "forward")
    assert "if rope is None:\n    q = q * q_scale.to(q.dtype)" in attention
    assert "q = q * q_scale.to(q.dtype)" not in attention  # never unguarded
    scale = next(s for s in _method(model, "Model", "forward") if s.startswith("q_scale = "))
    assert "torch.arange(tokens.shape[1], device=tokens.device)[None] + 1" in scale
    assert "positions" not in scale
    with pytest.raises(EditError):
        LognAttention().apply(_package(), logn={**logn, "layers": "odd"})


POWER = {
    "form": "power",
    "exponent": 0.1,
    "period": 2048.0,
    "offset": 1.0,
    "positions": "ids",
    "fp32": True,
    "layers": "nope",
}


def test_the_power_form_scales_the_nope_layers_queries_in_fp32():
    """beam: (1 + (pos + 1) / 2048) ** 0.1, as the source writes it, on the layers handed no
    rope tables; the product in fp32, cast back."""
    package = _package()
    LognAttention().apply(package, logn=POWER)
    files = package.render()
    model = files["model.py"]
    forward = _method(model, "Model", "forward")
    scale = next(s for s in forward if s.startswith("q_scale = "))
    assert scale == (
        "q_scale = torch.exp(0.1 * torch.log1p((positions.float() + 1) / 2048))[:, None, :, None]"
    )
    attention = "\n".join(_method(model, "Attention", "forward"))
    assert "if rope is None:\n    q = (q.float() * q_scale).to(q.dtype)" in attention
    assert "logn" not in files["args.py"]  # the code's own numbers, no config field


def test_the_power_form_reads_config_constants_through_model_args():
    package = _package()
    LognAttention().apply(package, logn={**POWER, "period": "hf_config.scale_period"})
    files = package.render()
    assert "torch.log1p((positions.float() + 1) / self.args.logn_period)" in files["model.py"]
    assert "logn_period=hf_config.scale_period" in files["args.py"]


def test_an_unknown_form_is_an_error():
    with pytest.raises(EditError, match="logn or power"):
        LognAttention().apply(_package(), logn={**POWER, "form": "cosine"})
