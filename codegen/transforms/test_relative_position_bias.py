"""RelativePositionBias: before/after on the qwen3 reference (rotary taken out first, as
inkling applies none), and the generated bias against transformers' own module."""

from __future__ import annotations

import ast
import importlib
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import make_attention_explicit
from codegen.transforms.edits import EditError
from codegen.transforms.no_rope import NoRope
from codegen.transforms.relative_position_bias import RelativePositionBias

BIAS = {
    "states": "r_proj",
    "table": "rel_logits_proj.proj",
    "width": "hf_config.d_rel",
    "extent": 'hf_config.sliding_window if hf_config.layer_types[i] == "sliding_attention"'
    " else hf_config.rel_extent",
    "kernel": "sdpa",  # HF's default kernel (`_supports_sdpa = True`)
}
EAGER = {**BIAS, "kernel": "eager"}  # HF's eager kernel only


def _package(bias=BIAS, *, reference="qwen3", explicit=False) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / reference)
    NoRope().apply(package)
    if explicit:  # an earlier transform (soft-cap, sinks) wrote the maths out
        make_attention_explicit(package)
    RelativePositionBias().apply(package, bias=bias)
    return package


def _method(code: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(code)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


BIAS_LINE = "bias = bias_by_distance(self.rel_bias(self.wr(x).view(batch, seq, q.shape[1], -1)))"
CAUSAL = "torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()"


REPEAT = (
    "if mask is not None and self.n_heads != self.n_kv_heads:\n"
    "    groups = self.n_heads // self.n_kv_heads\n"
    "    k, v = (k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1))"
)


@pytest.mark.parametrize(
    "reference, before_call",  # plain causal; a `mask` argument (sliding windows), None = causal
    [
        ("llama", [BIAS_LINE, f"visible = {CAUSAL}"]),
        ("qwen3", [BIAS_LINE, REPEAT, f"visible = {CAUSAL} if mask is None else mask"]),
    ],
)
def test_sdpa_takes_the_bias_as_its_additive_mask_and_no_scores_are_written(reference, before_call):
    """As HF's SDPA path (`torch.where(mask, position_bias, finfo.min)`): one float mask,
    the bias where a key is seen and the dtype's lowest where not; no scores-sized product,
    sum, fill and softmax written out per layer. Given a mask, grouped k/v heads are
    repeated as HF's path repeats them (without one, SDPA's GQA reads them as they are)."""
    before = SourcePackage.from_directory(references_dir() / reference).render()["model.py"]
    assert "RelativeBias" not in before and "F.scaled_dot_product_attention" in before
    model = _package(reference=reference).render()["model.py"]
    init = _method(model, "Attention", "__init__")
    assert "self.wr = nn.Linear(args.dim, self.n_heads * args.rel_dim, bias=False)" in init
    assert "self.rel_bias = RelativeBias(args.rel_dim, args.layer_rel_extents[layer_id])" in init
    forward = _method(model, "Attention", "forward")
    call = next(i for i, s in enumerate(forward) if "F.scaled_dot_product_attention" in s)
    assert forward[call - len(before_call) : call] == before_call
    assert "attn_mask=torch.where(visible, bias, torch.finfo(bias.dtype).min)" in forward[call]
    assert "is_causal" not in forward[call]
    assert not any(s.startswith("scores") for s in forward) and "softmax" not in model


@pytest.mark.parametrize(
    "bias, explicit",  # HF's kernel is eager; an earlier transform wrote the maths out
    [(EAGER, False), (BIAS, True)],
)
def test_written_out_attention_adds_the_bias_to_the_scaled_scores_before_the_mask(bias, explicit):
    """As HF's eager kernel: the scaled scores plus the bias, then masked, fp32 softmax."""
    model = _package(bias, explicit=explicit).render()["model.py"]
    forward = _method(model, "Attention", "forward")
    scores = next(i for i, s in enumerate(forward) if s.startswith("scores = q @ k"))
    assert forward[scores + 1] == (
        "scores = scores + bias_by_distance(self.rel_bias(self.wr(x).view(batch, seq,"
        " q.shape[1], -1)))"
    )
    masked = next(i for i, s in enumerate(forward) if s.startswith("scores.add_("))
    assert scores + 1 < masked
    assert "F.scaled_dot_product_attention" not in model


def test_args_read_the_width_and_each_layers_extent_and_the_adapter_maps_both():
    rendered = _package().render()
    args = rendered["args.py"]
    assert "rel_dim=hf_config.d_rel" in args
    assert (
        "layer_rel_extents=tuple(hf_config.sliding_window if hf_config.layer_types[i] =="
        ' "sliding_attention" else hf_config.rel_extent for i in'
        " range(hf_config.num_hidden_layers))"
    ) in " ".join(args.split())
    adapter = rendered["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.r_proj.weight": "layers.{}.attention.wr.weight"' in adapter
    assert (
        '"model.layers.{}.self_attn.rel_logits_proj.proj": "layers.{}.attention.rel_bias.table"'
        in adapter
    )


def test_a_width_that_differs_by_layer_is_refused():
    with pytest.raises(EditError, match="width"):
        _package({**BIAS, "width": "hf_config.d_rel * (i + 1)"})


def test_a_bias_without_its_kernel_or_another_kernel_is_refused():
    with pytest.raises(EditError, match="kernel"):
        _package({k: v for k, v in BIAS.items() if k != "kernel"})
    with pytest.raises(EditError, match="kernel"):
        _package({**BIAS, "kernel": "flex"})


def _load(package: SourcePackage, tmp_path, name: str):
    folder = tmp_path / name
    folder.mkdir()
    for filename, text in package.render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(f"{name}.model")
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("extent", [3, 12, 40])  # reached inside 20 tokens, and not
def test_the_bias_equals_transformers_relative_logits(tmp_path, extent):
    """Clamp, gather and the zero beyond the extent and ahead of the query, against HF's
    InklingRelativeLogits on the same table and states (the distance as HF's index
    difference)."""
    modeling = pytest.importorskip("transformers.models.inkling.modeling_inkling")
    model = _load(_package(), tmp_path, f"gen_rel_bias_{extent}")
    torch.manual_seed(0)
    ours = model.RelativeBias(6, extent)
    theirs = modeling.InklingRelativeLogits(6, extent)
    with torch.no_grad():
        ours.table.normal_()
        theirs.proj.copy_(ours.table)
    states = torch.randn(2, 20, 3, 6)
    seq = torch.arange(20)
    expected = theirs(states, seq, seq)
    got = model.bias_by_distance(ours(states))
    assert got.shape == (2, 3, 20, 20)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    if extent < 20:  # the clamp is reached: far keys unbiased, near ones not
        assert (got[..., 19, : 20 - extent] == 0).all()
        assert (got[..., 19, 20 - extent :] != 0).all()


def test_writing_out_an_sdpa_that_takes_the_bias_is_refused():
    """Writing the maths out after would hide `~attn_mask` as if it were a boolean mask."""
    with pytest.raises(EditError, match="additive mask"):
        make_attention_explicit(_package())
