"""PerLayerInputs: before/after on the qwen3 reference. The model builds a second table, a
projection and a norm (only where per_layer_dim is set), mixes them into each layer's input
before the layer loop, and each block gates, projects, norms and adds its slice; the adapter
maps the HF keys the analysis read."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.altup import AltUpStreams
from codegen.transforms.edits import EditError
from codegen.transforms.per_layer_inputs import PerLayerInputs
from codegen.transforms.test_altup import FOUND as ALTUP_FOUND

FOUND = {
    "input": "per_layer_input",
    "width": "hidden_size_per_layer_input",
    "vocab": "vocab_size_per_layer_input",
    "table": "model.embed_tokens_per_layer",
    "projection": "model.per_layer_model_projection",
    "mix_norm": "model.per_layer_projection_norm",
    "table_scale": "sqrt_width_dtype",
    "projection_scale": "rsqrt_dim",
    "mix_scale": "2.0**-0.5",
    "gate": "per_layer_input_gate",
    "up": "per_layer_projection",
    "norm": "post_per_layer_input_norm",
}


def _package(**changes) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    PerLayerInputs().apply(package, per_layer_input={**FOUND, **changes})
    return package


def _method(package, cls: str, name: str):
    method = find_method(package.module("model.py"), cls, name)
    assert method is not None, (cls, name)
    return method


def _attr(name: str) -> m.Attribute:
    return m.Attribute(value=m.Name("self"), attr=m.Name(name))


def test_before_the_reference_has_no_per_layer_inputs():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    assert "per_layer" not in package.render()["model.py"]


def test_model_builds_and_mixes_the_per_layer_inputs_before_the_layers():
    package = _package()
    init = _method(package, "Model", "__init__")
    for name in ("per_layer_embeddings", "per_layer_projection", "per_layer_projection_norm"):
        assert m.findall(init, m.AssignTarget(target=_attr(name))), name
    forward = _method(package, "Model", "forward")
    body = list(forward.body.body)
    mix = next(i for i, s in enumerate(body) if m.findall(s, _attr("per_layer_inputs")))
    loop = next(i for i, s in enumerate(body) if m.matches(s, m.For()))
    assert mix == loop - 1
    layer_call = m.Call(func=m.Name("layer"), args=[m.ZeroOrMore(), m.Arg(m.Name("per_layer"))])
    assert m.findall(body[loop], layer_call)
    # freed right after the loop: HF's head runs once its backbone has returned
    assert m.matches(body[loop + 1], m.SimpleStatementLine(body=[m.Del(m.Name("per_layer"))]))
    mixing = package.render()["model.py"]
    assert "table = table * torch.tensor(self.args.per_layer_dim**0.5, dtype=table.dtype)" in mixing
    assert "* 2.0**-0.5" in mixing and "self.args.dim**-0.5" in mixing


def test_block_adds_the_gated_slice_with_the_ffn_activation():
    package = _package()
    forward = _method(package, "TransformerBlock", "forward")
    gate = m.Call(func=m.Attribute(value=m.Name("F"), attr=m.Name("silu")))  # qwen3's SwiGLU
    assert m.findall(forward, m.BinaryOperation(left=gate, operator=m.Multiply()))
    assert m.findall(forward, m.Return(value=m.Name("out")))
    init = _method(package, "TransformerBlock", "__init__")
    for name in ("per_layer_gate", "per_layer_up", "per_layer_norm", "layer_id"):
        assert m.findall(init, m.AssignTarget(target=_attr(name))), name


def test_args_and_adapter_rows():
    rendered = _package().render()
    assert "per_layer_dim=hf_config.hidden_size_per_layer_input" in rendered["args.py"]
    assert "per_layer_vocab_size=hf_config.vocab_size_per_layer_input" in rendered["args.py"]
    adapter = rendered["state_dict_adapter.py"]
    for row in (
        '"model.embed_tokens_per_layer.weight": "per_layer_embeddings.weight"',
        '"model.per_layer_projection_norm.weight": "per_layer_projection_norm.weight"',
        '"model.layers.{}.per_layer_input_gate.weight": "layers.{}.per_layer_gate.weight"',
        '"model.layers.{}.post_per_layer_input_norm.weight": "layers.{}.per_layer_norm.weight"',
    ):
        assert row in adapter


def _built(tmp_path, package, name: str):
    folder = tmp_path / name
    folder.mkdir()
    for filename, text in package.render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args = importlib.import_module(f"{name}.args")
        model = importlib.import_module(f"{name}.model")
    finally:
        sys.path.remove(str(tmp_path))
    return args, model


@pytest.mark.parametrize("width", [8, 0, None])
def test_the_switch_builds_the_parts_only_where_set(tmp_path, width):
    args_module, model_module = _built(tmp_path, _package(), f"gen_per_layer_{width}")
    args = args_module.ModelArgs(dim=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8)
    args.vocab_size, args.hidden_dim, args.per_layer_vocab_size = 32, 24, 40
    args.per_layer_dim = width
    torch.manual_seed(0)
    model = model_module.Model(args)
    keys = model.state_dict()
    assert ("per_layer_embeddings.weight" in keys) == bool(width)
    assert ("layers.1.per_layer_gate.weight" in keys) == bool(width)
    tokens = torch.randint(0, 32, (2, 5))
    logits = model(tokens)
    assert logits.shape == (2, 5, 32)
    if width:
        assert keys["per_layer_embeddings.weight"].shape == (40, 2 * width)
        with torch.no_grad():
            model.layers[1].per_layer_up.weight.zero_()  # the norm of zeros: no addition
            assert not torch.allclose(model(tokens), logits)


def test_another_projection_scale_is_an_error():
    with pytest.raises(EditError):
        _package(projection_scale="other")


def _streams_package(**changes) -> SourcePackage:
    """qwen3 on AltUp's streams, then the per-layer inputs into them (gemma3n's form)."""
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    AltUpStreams().apply(package, altup=ALTUP_FOUND)
    found = {
        **FOUND,
        "into": "streams",
        "correct_scale": "altup_correct_scale",
        "projection_scale": "rsqrt_dim_dtype",
        "mix_scale_dtype": True,
        **changes,
    }
    PerLayerInputs().apply(package, per_layer_input=found)
    return package


def test_into_streams_adds_after_the_correction_to_the_streams_after_the_first():
    before = SourcePackage.from_directory(references_dir() / "qwen3")
    AltUpStreams().apply(before, altup=ALTUP_FOUND)
    assert "per_layer" not in before.render()["model.py"]
    package = _streams_package()
    forward = _method(package, "TransformerBlock", "forward")
    correct = m.Call(func=m.Attribute(value=_attr("altup"), attr=m.Name("correct")))
    assert m.findall(forward, m.Assign(targets=[m.AssignTarget(m.Name("out"))], value=correct))
    into = m.Subscript(
        value=m.Name("out"), slice=[m.SubscriptElement(m.Slice(lower=m.Integer("1")))]
    )
    assert m.findall(forward, m.AugAssign(target=into, operator=m.AddAssign()))
    assert m.findall(forward, m.If(test=_attr("per_layer_scaled")))
    assert m.findall(forward, m.Return(value=m.Name("out")))
    rendered = package.render()
    assert "altup_correct_scale=hf_config.altup_correct_scale" in rendered["args.py"]
    assert "self.per_layer_scaled = args.altup_correct_scale" in rendered["model.py"]
    # both scales rounded to the embeddings' dtype, as HF's buffers are
    assert "torch.tensor(self.args.dim**-0.5, dtype=h.dtype)" in rendered["model.py"]
    assert "torch.tensor(2.0**-0.5, dtype=h.dtype)" in rendered["model.py"]


def test_into_streams_without_a_scale_switch_reads_the_active_stream_as_it_is():
    rendered = _streams_package(correct_scale=None).render()
    assert "per_layer_scaled" not in rendered["model.py"]
    assert "altup_correct_scale" not in rendered["args.py"]


@pytest.mark.parametrize("scaled", [True, False])
def test_into_streams_computes_the_addition(tmp_path, scaled):
    args_module, model_module = _built(tmp_path, _streams_package(), f"gen_streams_{scaled}")
    args = args_module.ModelArgs(dim=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8)
    args.vocab_size, args.hidden_dim, args.per_layer_vocab_size = 32, 24, 40
    args.per_layer_dim, args.altup_correct_scale = 8, scaled
    torch.manual_seed(0)
    model = model_module.Model(args)
    block = model.layers[0]
    with torch.no_grad():
        block.altup.output_scale.normal_()
        streams = torch.randn(args.altup_streams, 2, 5, 16)
        per_layer = torch.randn(2, 5, 2, 8)
        rope = model.rotary(torch.arange(5).unsqueeze(0))
        got = block(streams, rope, None, per_layer)
        corrected = block(streams, rope, None, None)
        active = corrected[block.altup.active] * (block.altup.output_scale if scaled else 1)
        gated = torch.nn.functional.silu(block.per_layer_gate(active)) * per_layer[:, :, 0]
        added = block.per_layer_norm(block.per_layer_up(gated))
        assert torch.allclose(got[0], corrected[0])
        assert torch.allclose(got[1:], corrected[1:] + added, atol=1e-6)


def test_into_anything_else_is_an_error():
    with pytest.raises(EditError):
        _package(into="sideways")
    with pytest.raises(EditError):  # no AltUp correction to add into
        _package(into="streams")


@pytest.mark.parametrize("read_zero", [True, False])
def test_ids_outside_the_table_read_its_row_zero_where_hf_does(tmp_path, read_zero):
    """gemma3n's main vocabulary is longer than its per-layer table; HF's lookup reads the
    ids past the table as row 0 (`torch.where(in_table, ids, 0)`), and so does the package's
    where the analysis read that form; elsewhere (gemma4) an id past the table is an error,
    as in HF."""
    package = _package(outside_rows_read_zero=read_zero)
    args_module, model_module = _built(tmp_path, package, f"gen_outside_rows_{read_zero}")
    args = args_module.ModelArgs(dim=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8)
    args.vocab_size, args.hidden_dim, args.per_layer_vocab_size = 48, 24, 40
    args.per_layer_dim = 8
    torch.manual_seed(0)
    model = model_module.Model(args)
    tokens = torch.tensor([[3, 41, 47, 0]])
    h = torch.randn(1, 4, 16)
    if not read_zero:
        with pytest.raises(IndexError):
            model.per_layer_inputs(tokens, h)
        return
    out = model.per_layer_inputs(tokens, h)
    zero = model.per_layer_inputs(torch.tensor([[3, 0, 0, 0]]), h)
    assert torch.equal(out, zero)
