"""KeysOnlyNorm: the query's norm removed, the key's kept (qwen3, and llama after SetQkNorm)."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.keys_only_norm import KeysOnlyNorm
from codegen.transforms.qk_norm import SetQkNorm

Q_ROW = '"model.layers.{}.self_attn.q_norm.weight": "layers.{}.attention.q_norm.weight"'
K_ROW = '"model.layers.{}.self_attn.k_norm.weight": "layers.{}.attention.k_norm.weight"'


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def test_qwen3s_query_norm_goes_and_its_key_norm_stays():
    package = _package("qwen3")
    before = package.render()["model.py"]
    assert "self.q_norm(self.wq(x)" in before
    KeysOnlyNorm().apply(package)
    files = package.render()
    model = files["model.py"]
    # (the module docstring is rewritten by the pipeline's describe step)
    assert "self.q_norm" not in model
    assert "self.k_norm = RMSNorm(args.head_dim, args.norm_eps)" in model
    assert "q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)" in model
    assert (
        "k = self.k_norm(self.wk(x).view(batch, seq, -1, self.head_dim)).transpose(1, 2)" in model
    )
    assert Q_ROW not in files["state_dict_adapter.py"]
    assert K_ROW in files["state_dict_adapter.py"]
    assert "q_norm" not in files["args.py"]  # the norm_eps comment that named it


def test_a_whole_width_key_norm_is_kept_as_built():
    package = _package("llama")
    SetQkNorm().apply(package, kind="full")
    KeysOnlyNorm().apply(package)
    model = package.render()["model.py"]
    assert "self.q_norm" not in model
    assert "self.k_norm = RMSNorm(args.n_kv_heads * args.head_dim, args.norm_eps)" in model
    assert "k = self.k_norm(self.wk(x)).view(batch, seq, -1, self.head_dim)" in model
    assert "q = self.wq(x).view(batch, seq, -1, self.head_dim)" in model


def test_no_key_norm_to_keep_raises():
    with pytest.raises(EditError):
        KeysOnlyNorm().apply(_package("llama"))


def test_a_key_norm_built_alone_is_kept_as_it_is():
    package = _package("llama")
    SetQkNorm().apply(package, kind="per_head", on="keys")
    before = package.render()
    assert "self.q_norm" not in before["model.py"] and K_ROW in before["state_dict_adapter.py"]
    assert "self.k_norm(self.wk(x).view(" in before["model.py"]
    KeysOnlyNorm().apply(package)
    assert package.render() == before
