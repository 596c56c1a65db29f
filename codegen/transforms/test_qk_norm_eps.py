"""QkNormEps: the q/k norms (or the key's alone) read an epsilon of their own."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.keys_only_norm import KeysOnlyNorm
from codegen.transforms.qk_norm_eps import QkNormEps


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def test_qwen3s_norms_read_a_config_field_of_their_own():
    package = _package("qwen3")
    QkNormEps().apply(package, eps={"field": "qk_eps", "value": 1e-5})
    files = package.render()
    assert "self.q_norm = RMSNorm(args.head_dim, args.qk_norm_eps)" in files["model.py"]
    assert "self.k_norm = RMSNorm(args.head_dim, args.qk_norm_eps)" in files["model.py"]
    assert "self.attention_norm = RMSNorm(args.dim, args.norm_eps)" in files["model.py"]
    args = files["args.py"]
    assert "qk_norm_eps: float = 1e-05  # the q/k norms' epsilon, not norm_eps" in args
    assert "qk_norm_eps=hf_config.qk_eps," in args
    assert "q_norm and k_norm included" not in args  # norm_eps is no longer theirs


def test_a_key_norm_alone_with_the_codes_number():
    package = _package("qwen3")
    KeysOnlyNorm().apply(package)
    QkNormEps().apply(package, eps={"field": None, "value": 1e-6})
    files = package.render()
    assert "self.k_norm = RMSNorm(args.head_dim, args.qk_norm_eps)" in files["model.py"]
    args = files["args.py"]
    assert "qk_norm_eps: float = 1e-06  # the key norm's epsilon, fixed by the code" in args
    assert "qk_norm_eps=" not in args


def test_no_qk_norm_raises():
    with pytest.raises(EditError):
        QkNormEps().apply(_package("llama"), eps={"field": "qk_eps", "value": 1e-5})
