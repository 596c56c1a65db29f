"""RmsNormWeightFp32: every RMSNorm becomes the cast-last kind; bf16 rounding as T5-style."""

import pytest
import torch

from codegen.layers.norm import RMSNorm
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.rmsnorm_weight_fp32 import CAST_LAST_RMSNORM, RmsNormWeightFp32
from codegen.transforms.testing import package_of


def test_every_rmsnorm_of_qwen3_becomes_cast_last():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    before = package.render()["model.py"]
    count = before.count("RMSNorm(")
    assert count >= 4  # block norms, final norm, q/k norms
    RmsNormWeightFp32().apply(package)
    after = package.render()["model.py"]
    assert after.count("CastLastRMSNorm(") == count + 1  # the calls and the class
    assert "from codegen.layers.norm import RMSNorm" not in after
    assert "return (self.weight * normed).to(x.dtype)" in after


def test_cast_last_rounds_once_where_llamas_norm_rounds_twice():
    namespace = {"nn": torch.nn, "torch": torch}
    exec(CAST_LAST_RMSNORM, namespace)  # noqa: S102 - the class the transform inserts
    torch.manual_seed(0)
    x = torch.randn(64, 96).to(torch.bfloat16)
    weight = torch.randn(96)
    cast_last, llama = namespace["CastLastRMSNorm"](96), RMSNorm(96)
    for norm in (cast_last, llama):
        norm.weight.data.copy_(weight)
        norm.to(torch.bfloat16)
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)
    want = (weight.to(torch.bfloat16).float() * normed).to(torch.bfloat16)
    assert torch.equal(cast_last(x), want)
    assert not torch.equal(llama(x), want)  # the order shows in bf16


def test_a_model_without_rmsnorm_is_an_error():
    package = package_of({"model.py": "class Attention:\n    pass\n"})
    with pytest.raises(EditError):
        RmsNormWeightFp32().apply(package)
