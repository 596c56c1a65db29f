"""LayerNormEps: before/after on the llama reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.layer_norm_eps import CONFIG_EPS, LayerNormEps


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_before_every_norm_reads_the_config_epsilon():
    model = _llama().render()["model.py"]
    assert model.count("RMSNorm(args.dim, args.norm_eps)") == 3
    assert "layer_norm_eps" not in model
    assert "norm_eps: float = 1e-5\n" in _llama().render()["args.py"]  # no comment yet


def test_after_the_layer_norms_read_the_fixed_one_and_the_final_norm_the_config():
    package = _llama()
    LayerNormEps().apply(package, eps=1e-6)
    files = package.render()
    model = files["model.py"]
    assert "self.attention_norm = RMSNorm(args.dim, args.layer_norm_eps)" in model
    assert "self.ffn_norm = RMSNorm(args.dim, args.layer_norm_eps)" in model
    assert "self.norm = RMSNorm(args.dim, args.norm_eps)" in model
    assert "layer_norm_eps: float = 1e-06" in files["args.py"]
    assert "layer_norm_eps=" not in files["args.py"]  # no config field sets it
    # the config's field is no longer every norm's: its comment says whose it is
    assert f"norm_eps: float = 1e-5  # {CONFIG_EPS}" in files["args.py"]
    assert "norm_eps=hf_config.rms_norm_eps" in files["args.py"]


def test_a_non_number_is_refused():
    with pytest.raises(EditError):
        LayerNormEps().apply(_llama(), eps="rms_norm_eps")
