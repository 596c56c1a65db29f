"""SetSparseMixer: before/after on the qwen3_moe reference; the route it writes computes
what transformers' PhiMoE sparsemixer computes in eval mode."""

from __future__ import annotations

import types

import libcst as cst
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.sparse_mixer import SetSparseMixer


def mixer_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    SetSparseMixer().apply(package, picks=2, jitter_field="router_jitter_noise")
    return package


def route_of(model_source: str):
    """MoE.route of the rendered model.py, as a function of (self, logits)."""
    module = cst.parse_module(model_source)
    moe = next(s for s in module.body if isinstance(s, cst.ClassDef) and s.name.value == "MoE")
    route = next(
        s for s in moe.body.body if isinstance(s, cst.FunctionDef) and s.name.value == "route"
    )
    namespace = {"torch": torch}
    exec(cst.Module([route]).code, namespace)
    return namespace["route"]


def test_route_is_a_sparse_mixer_reading_the_jitter_field():
    files = mixer_package().render()
    model, args = files["model.py"], files["args.py"]
    assert "self.router_jitter = args.router_jitter" in model
    assert "topk" not in model.split("def route(", 1)[1].split("def forward(", 1)[0]
    assert "router_jitter=hf_config.router_jitter_noise," in args
    assert "router_jitter: float" in args
    # the renormalisation flag the reference's route read is no longer held by MoE
    assert "self.norm_topk_prob" not in model


def test_route_matches_transformers_eval_sparsemixer():
    sparsemixer = pytest.importorskip("transformers.models.phimoe.modeling_phimoe").sparsemixer
    route = route_of(mixer_package().render()["model.py"])
    torch.manual_seed(0)
    logits = torch.randn(64, 16)
    logits[:8, 3] = logits[:8].max(dim=-1).values - 1e-3  # runners-up inside the jitter gap
    for jitter in (0.01, 0.3):
        want_w, want_i = sparsemixer(logits, jitter_eps=jitter, training=False)
        got_w, got_i = route(types.SimpleNamespace(router_jitter=jitter), logits)
        assert torch.equal(got_i, want_i)
        assert torch.equal(got_w, want_w)


def test_twice_is_once():
    package = mixer_package()
    once = package.render()
    SetSparseMixer().apply(package, picks=2, jitter_field="router_jitter_noise")
    assert package.render() == once


def test_unknown_jitter_field_is_an_edit_error():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    with pytest.raises(EditError):
        SetSparseMixer().apply(package, picks=2, jitter_field=None)
