"""LogScaledLayers: before/after on the qwen3 reference with its layers windowed by type and a
relative position bias (no rotary), as Inkling-2's attention is when the rule runs."""

from __future__ import annotations

import ast

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.log_scaled_layers import LogScaledLayers
from codegen.transforms.no_rope import NoRope
from codegen.transforms.relative_position_bias import RelativePositionBias
from codegen.transforms.sliding_window import SetSlidingWindow
from codegen.transforms.test_relative_position_bias import BIAS

FOUND = {
    "layers": "full",
    "alpha": "hf_config.log_scaling_alpha",
    "floor": "hf_config.log_scaling_n_floor",
    "offset": 1,
    "scaled": ("q", "rel"),
}


def _before() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    SetSlidingWindow().apply(package, mode="pattern")
    NoRope().apply(package)
    RelativePositionBias().apply(package, bias=BIAS)
    return package


def _after(found=FOUND) -> dict[str, str]:
    package = _before()
    LogScaledLayers().apply(package, log_scaling=found)
    return package.render()


def _classes(code: str) -> dict[str, ast.ClassDef]:
    return {n.name: n for n in ast.parse(code).body if isinstance(n, ast.ClassDef)}


def _params(code: str, cls: str) -> list[str]:
    """The parameter names of `cls.forward`."""
    method = next(
        n
        for n in _classes(code)[cls].body
        if isinstance(n, ast.FunctionDef) and n.name == "forward"
    )
    return [a.arg for a in method.args.args]


def _method(code: str, cls: str, name: str) -> list[str]:
    method = next(
        n for n in _classes(code)[cls].body if isinstance(n, ast.FunctionDef) and n.name == name
    )
    return [ast.unparse(s) for s in method.body]


def test_the_full_layers_build_a_copy_of_the_attention_that_scales_q_and_the_rel_states():
    before = _before().render()["model.py"]
    assert "LogScaledAttention" not in before and "log_scale" not in before
    model = _after()["model.py"]
    classes = list(_classes(model))
    assert classes.index("LogScaledAttention") == classes.index("Attention") + 1
    assert _method(model, "LogScaledAttention", "__init__") == _method(
        model, "Attention", "__init__"
    )
    plain = _method(model, "Attention", "forward")
    scaled = _method(model, "LogScaledAttention", "forward")
    at = next(i for i, s in enumerate(scaled) if s.startswith("q = "))
    assert scaled[at + 1] == "q = (q.float() * log_scale[:, None, :, None]).to(q.dtype)"
    assert (
        "self.rel_bias((self.wr(x).view(batch, seq, q.shape[1], -1).float() *"
        " log_scale[:, :, None, None]).to(x.dtype))"
    ) in next(s for s in scaled if "rel_bias" in s)
    # the plain attention as before: it is handed no scale
    assert _params(model, "Attention") == _params(before, "Attention")
    assert "log_scale" not in _params(model, "Attention") and not any(
        "log_scale" in s for s in plain
    )
    assert _params(model, "LogScaledAttention")[-1] == "log_scale"
    block = _method(model, "TransformerBlock", "__init__")
    assert (
        "self.attention = (Attention if self.sliding else LogScaledAttention)(args, layer_id)"
        in (block)
    )
    # the block hands the scale to the full layers' attention alone
    assert _params(model, "TransformerBlock")[-1] == "log_scale"
    calls = [
        ast.unparse(n)
        for s in _classes(model)["TransformerBlock"].body
        if isinstance(s, ast.FunctionDef) and s.name == "forward"
        for n in ast.walk(s)
        if isinstance(n, ast.IfExp)
    ]
    assert calls == [
        "self.attention(self.attention_norm(x), mask) if self.sliding else"
        " self.attention(self.attention_norm(x), mask, log_scale)"
    ]
    forward = _method(model, "Model", "forward")
    loop = next(i for i, s in enumerate(forward) if s.startswith("for layer in self.layers"))
    assert forward[loop - 1] == (
        "log_scale = 1.0 + self.args.log_scaling_alpha * torch.log(((positions + 1).float() /"
        " self.args.log_scaling_floor).clamp(min=1.0))"
    )
    assert "log_scale)" in forward[loop]
    args = _after()["args.py"]
    assert "log_scaling_alpha=hf_config.log_scaling_alpha" in args
    assert "log_scaling_floor=hf_config.log_scaling_n_floor" in args


def test_without_an_offset_the_positions_are_read_as_they_are():
    model = _after({**FOUND, "offset": 0, "scaled": ("q",)})["model.py"]
    assert "torch.log((positions.float() / self.args.log_scaling_floor)" in " ".join(model.split())
    assert not any("log_scale" in s for s in _method(model, "LogScaledAttention", "forward")[-6:])


@pytest.mark.parametrize(
    "found",
    [
        {**FOUND, "alpha": None},
        {**FOUND, "layers": (5, 11)},
        {**FOUND, "scaled": ("k",)},
    ],
)
def test_what_it_cannot_build_is_an_error(found):
    with pytest.raises(EditError):
        LogScaledLayers().apply(_before(), log_scaling=found)


def test_a_block_without_layer_types_is_an_error():
    package = SourcePackage.from_directory(references_dir() / "llama")
    NoRope().apply(package)
    with pytest.raises(EditError, match="layer type"):
        LogScaledLayers().apply(package, log_scaling=FOUND)
