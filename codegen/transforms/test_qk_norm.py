"""SetQkNorm: before/after on the llama and qwen3 references."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.qk_norm import SetQkNorm

ROWS = (
    '"model.layers.{}.self_attn.q_norm.weight": "layers.{}.attention.q_norm.weight"',
    '"model.layers.{}.self_attn.k_norm.weight": "layers.{}.attention.k_norm.weight"',
)


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def test_per_head_norms_each_head_before_rope():
    package = _package("llama")
    SetQkNorm().apply(package, kind="per_head")
    files = package.render()
    model = files["model.py"]
    assert "self.q_norm = RMSNorm(args.head_dim, args.norm_eps)" in model
    assert "self.k_norm = RMSNorm(args.head_dim, args.norm_eps)" in model
    assert (
        "q = self.q_norm(self.wq(x).view(batch, seq, -1, self.head_dim)).transpose(1, 2)" in model
    )
    assert model.index("self.k_norm(self.wk(x)") < model.index("apply_rotary(q")
    assert all(row in files["state_dict_adapter.py"] for row in ROWS)


def test_full_norms_the_whole_projection_before_the_view():
    package = _package("llama")
    SetQkNorm().apply(package, kind="full")
    model = package.render()["model.py"]
    assert "self.q_norm = RMSNorm(args.n_heads * args.head_dim, args.norm_eps)" in model
    assert "self.k_norm = RMSNorm(args.n_kv_heads * args.head_dim, args.norm_eps)" in model
    assert "q = self.q_norm(self.wq(x)).view(batch, seq, -1, self.head_dim)" in model


def test_none_removes_qwen3s_norms_and_rows():
    package = _package("qwen3")
    SetQkNorm().apply(package, kind="none")
    files = package.render()
    # (the module docstring is rewritten by the pipeline's describe step)
    assert "self.q_norm" not in files["model.py"] and "self.k_norm" not in files["model.py"]
    assert (
        "q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)" in (files["model.py"])
    )
    assert not any(row in files["state_dict_adapter.py"] for row in ROWS)
    assert "q_norm" not in files["args.py"]  # the norm_eps comment that named them


def test_per_head_to_full_replaces_rather_than_stacks():
    package = _package("qwen3")
    SetQkNorm().apply(package, kind="full")
    files = package.render()
    assert files["model.py"].count("self.q_norm = ") == 1
    assert "self.q_norm(self.wq(x)).view(" in files["model.py"]
    assert files["state_dict_adapter.py"].count("q_norm.weight") == 2  # one row: key and value


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        SetQkNorm().apply(_package("llama"), kind="layernorm")


def test_on_keys_builds_the_keys_norm_alone():
    package = _package("llama")
    SetQkNorm().apply(package, kind="full", on="keys")
    files = package.render()
    model = files["model.py"]
    assert "self.q_norm" not in model
    assert "self.k_norm = RMSNorm(args.n_kv_heads * args.head_dim, args.norm_eps)" in model
    assert "k = self.k_norm(self.wk(x)).view(batch, seq, -1, self.head_dim)" in model
    assert ROWS[0] not in files["state_dict_adapter.py"]
    assert ROWS[1] in files["state_dict_adapter.py"]
