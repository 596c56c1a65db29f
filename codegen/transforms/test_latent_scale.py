"""LatentScale: before/after on the deepseek_v3 reference, and the factor the package
multiplies the normed latents by."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import libcst.matchers as m
import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.indexed_attention import IndexedAttention
from codegen.transforms.latent_scale import LatentScale

INDEXER = {
    "module": "indexer",
    "q_proj": "wq_b",
    "k_proj": "wk",
    "k_norm": "k_norm",
    "weights_proj": "weights_proj",
    "interleaved": True,
    "rope_dims": "leading",
    "k_norm_eps": 1e-06,
}


def _scaled(norm: str, scale: str) -> m.BinaryOperation:
    return m.BinaryOperation(
        left=m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name(norm))),
        operator=m.Multiply(),
        right=m.Attribute(value=m.Name("self"), attr=m.Name(scale)),
    )


def _package() -> SourcePackage:
    """The reference with its query latent always built (the indexer reads it, as dots3's)."""
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    IndexedAttention().apply(package, indexer=INDEXER)
    return package


def test_both_latents_are_scaled_before_going_up():
    package = _package()
    assert not m.findall(package.module("model.py"), _scaled("q_norm", "q_scale"))
    LatentScale().apply(package, which="q_kv")
    model = package.module("model.py")
    assert len(m.findall(model, _scaled("q_norm", "q_scale"))) == 1
    assert len(m.findall(model, _scaled("kv_norm", "kv_scale"))) == 1


def test_one_latent_only():
    package = _package()
    LatentScale().apply(package, which="kv")
    model = package.module("model.py")
    assert m.findall(model, _scaled("kv_norm", "kv_scale"))
    assert not m.findall(model, _scaled("q_norm", "q_scale"))
    with pytest.raises(ValueError, match="one of q, kv, q_kv"):
        LatentScale().apply(_package(), which="other")
    optional = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    with pytest.raises(EditError, match="optional q latent"):
        LatentScale().apply(optional, which="q")  # q_lora_rank None builds no q_norm


def test_the_factor_is_sqrt_hidden_over_rank(tmp_path):
    package = _package()
    LatentScale().apply(package, which="q_kv")
    folder = tmp_path / "gen_latent_scale"
    folder.mkdir()
    for name, text in package.render().items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_latent_scale.args")
        model_module = importlib.import_module("gen_latent_scale.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(
        dim=32, n_layers=1, n_heads=2, vocab_size=16, q_lora_rank=8, kv_lora_rank=2,
        qk_nope_head_dim=4, qk_rope_head_dim=2, v_head_dim=4, hidden_dim=8, n_dense_layers=1,
        index_n_heads=2, index_head_dim=4, index_topk=2,
    )  # fmt: skip
    attention = model_module.Attention(args)
    assert attention.q_scale == pytest.approx(2.0) and attention.kv_scale == pytest.approx(4.0)


def test_a_target_without_the_q_rank_switch_always_has_the_q_latent():
    # LongCat-Flash's queries always go through the latent (no `q_lora_rank is None` branch):
    # the reference's single-wq alternative goes, and the latent is scaled
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    LatentScale().apply(package, SimpleNamespace(switches=()), which="q_kv")
    model = package.module("model.py")
    code = package.render()["model.py"]
    assert "self.wq = " not in code and "q_lora_rank is None" not in code
    assert "        q = self.wq_b(self.q_norm(self.wq_a(x)) * self.q_scale)\n" in code
    assert len(m.findall(model, _scaled("kv_norm", "kv_scale"))) == 1
    assert "the query latent (wq_a -> q_norm -> wq_b)" in package.render()["args.py"]
    adapter = package.render()["state_dict_adapter.py"]
    assert "q_lora_rank is None" not in adapter  # the adapter's docstring says it no more
    assert "The attention biases exist only with attention_bias." in adapter
    # a target that switches it keeps the branch: no scale to keep beside an optional norm
    switched = SimpleNamespace(switches=(SimpleNamespace(field="q_lora_rank"),))
    with pytest.raises(EditError, match="optional q latent"):
        LatentScale().apply(
            SourcePackage.from_directory(references_dir() / "deepseek_v3"), switched, which="q"
        )
