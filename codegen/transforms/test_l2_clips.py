"""L2Clips: before/after on the llama reference with inkling's relative bias (rotary taken
out first), and the generated clips against transformers' inkling2 modules."""

from __future__ import annotations

import ast

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.l2_clips import L2Clips
from codegen.transforms.no_rope import NoRope
from codegen.transforms.relative_position_bias import RelativePositionBias

BIAS = {
    "states": "r_proj",
    "table": "rel_logits_proj.proj",
    "width": "4",
    "extent": "8",
    "kernel": "eager",
}
QK = "hf_config.qk_l2_clip_threshold"
CLIPS = {
    "q": {"module": "q_l2_clip", "scale": "scale", "threshold": QK, "value": 2.0},
    "k": {"module": "k_l2_clip", "scale": None, "threshold": QK, "value": 2.0},
    "rel": {
        "module": "rel_l2_clip",
        "scale": "scale",
        "threshold": "hf_config.rel_l2_clip_threshold",
        "value": 8.0,
    },
}
CLIPS = {t: {**c, "eps": 1e-6, "fp32": True} for t, c in CLIPS.items()}


def _package(clips=CLIPS) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    NoRope().apply(package)
    RelativePositionBias().apply(package, bias=BIAS)
    L2Clips().apply(package, clips=clips)
    return package


def _forward(code: str) -> str:
    tree = ast.parse(code)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Attention")
    return ast.unparse(next(n for n in owner.body if getattr(n, "name", "") == "forward"))


def test_each_tensor_is_clipped_right_after_its_view_to_heads():
    files = _package().render()
    forward = _forward(files["model.py"])
    assert "q = self.q_clip(self.wq(x).view(batch, seq, -1, self.head_dim))" in forward
    assert "k = self.k_clip(self.wk(x).view(batch, seq, -1, self.head_dim))" in forward
    assert "self.rel_bias(self.rel_clip(self.wr(x).view(batch, seq, q.shape[1], -1)))" in forward
    model = files["model.py"]
    assert (
        "self.q_clip = ScaledL2Clip(self.n_heads, self.head_dim, args.qk_clip_threshold)" in model
    )
    assert "self.k_clip = L2Clip(args.qk_clip_threshold)" in model
    assert (
        "self.rel_clip = ScaledL2Clip(self.n_heads, args.rel_dim, args.rel_clip_threshold)" in model
    )
    # one field per config field: q and k share theirs
    args = files["args.py"]
    assert "qk_clip_threshold=hf_config.qk_l2_clip_threshold," in args
    assert "rel_clip_threshold=hf_config.rel_l2_clip_threshold," in args
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.q_l2_clip.scale": "layers.{}.attention.q_clip.scale"' in (
        adapter
    )
    assert "k_l2_clip" not in adapter  # no learned scale, nothing stored


def test_only_the_scaled_form_leaves_no_plain_forward():
    clips = {"q": CLIPS["q"]}
    model = _package(clips).render()["model.py"]
    tree = ast.parse(model)
    clip = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "L2Clip")
    assert [n.name for n in clip.body if isinstance(n, ast.FunctionDef)] == ["__init__", "clip"]
    assert "self.k_clip" not in model and "self.rel_clip" not in model


def test_the_clips_compute_as_transformers_modules():
    """The generated modules against transformers' inkling2 clips on the same weights."""
    modeling = pytest.importorskip("transformers.models.inkling2.modeling_inkling2")
    model = _package().render()["model.py"]
    namespace: dict = {}
    tree = ast.parse(model)
    keep = [
        n
        for n in tree.body
        if isinstance(n, ast.Import)
        or (isinstance(n, ast.ImportFrom) and not n.level)
        or (isinstance(n, ast.ClassDef) and n.name in ("L2Clip", "ScaledL2Clip"))
    ]
    exec(compile(ast.Module(keep, []), "model.py", "exec"), namespace)
    torch.manual_seed(0)
    x = (torch.randn(2, 5, 3, 8) * 2).to(torch.bfloat16)
    ours = namespace["ScaledL2Clip"](3, 8, 2.0)
    theirs = modeling.Inkling2ScaledL2Clip(3, 8, 2.0)
    with torch.no_grad():
        ours.scale.normal_()
        theirs.scale.copy_(ours.scale)
    assert torch.equal(ours(x), theirs(x))
    assert torch.equal(namespace["L2Clip"](2.0)(x), modeling.Inkling2L2Clip(2.0)(x))


def test_a_clip_of_the_values_or_mixed_epsilons_are_refused():
    with pytest.raises(EditError):
        _package({"v": CLIPS["k"]})
    with pytest.raises(EditError):
        _package({"q": CLIPS["q"], "k": {**CLIPS["k"], "eps": 1e-5}})
