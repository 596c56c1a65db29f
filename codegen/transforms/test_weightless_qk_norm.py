"""WeightlessQkNorm: before/after on the qwen3 reference; the norm it builds is HF's
Llama4 L2 norm."""

from __future__ import annotations

import libcst as cst
import pytest
import torch
from torch import nn

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.weightless_qk_norm import WeightlessQkNorm


def weightless_package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    WeightlessQkNorm().apply(package)
    return package


def test_qk_norms_hold_no_weight_and_no_checkpoint_rows():
    files = weightless_package().render()
    model, adapter = files["model.py"], files["state_dict_adapter.py"]
    assert "self.q_norm = PlainRMSNorm(args.head_dim, args.norm_eps)" in model
    assert "self.k_norm = PlainRMSNorm(args.head_dim, args.norm_eps)" in model
    assert "self.attention_norm = RMSNorm(" in model  # the layer norms keep their weight
    assert "q_norm.weight" not in adapter and "k_norm.weight" not in adapter
    assert "input_layernorm.weight" in adapter


def test_plain_norm_is_hfs_l2_norm():
    llama4 = pytest.importorskip("transformers.models.llama4.modeling_llama4")
    module = cst.parse_module(weightless_package().render()["model.py"])
    (cls,) = [
        s for s in module.body if isinstance(s, cst.ClassDef) and s.name.value == "PlainRMSNorm"
    ]
    namespace = {"torch": torch, "nn": nn}
    exec(cst.Module([cls]).code, namespace)
    x = torch.randn(2, 3, 5, 40, dtype=torch.bfloat16)
    ours = namespace["PlainRMSNorm"](40, 1e-5)(x)
    assert torch.equal(ours, llama4.Llama4TextL2Norm(1e-5)(x))
    assert not list(namespace["PlainRMSNorm"](40).parameters())


def test_twice_is_once_and_no_norm_is_an_error():
    package = weightless_package()
    once = package.render()
    WeightlessQkNorm().apply(package)
    assert package.render() == once
    with pytest.raises(EditError):
        WeightlessQkNorm().apply(SourcePackage.from_directory(references_dir() / "llama"))
