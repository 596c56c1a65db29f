"""GatedProductFp32: before/after on the llama reference's FeedForward and on the routed
Experts add_moe wires in; in bf16 the rewritten modules round as beam's HF MLP and experts
do (bit for bit), the reference's do not; the analysis reads beam's fp32 products."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.add_moe import AddMoe
from codegen.transforms.edits import EditError
from codegen.transforms.gated_product_fp32 import GatedProductFp32

PLAIN = "return self.w2(F.silu(self.w1(x)) * self.w3(x))"
FP32 = "return self.w2((F.silu(self.w1(x).float()) * self.w3(x).float()).to(x.dtype))"


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def _moe() -> SourcePackage:
    package = _llama()
    AddMoe().apply(package, dense_rule="all", norm_topk_prob="config")
    return package


def _module(package: SourcePackage, name: str):
    """Execute the package's model.py classes (torch only) and return class `name`."""
    code = package.render()["model.py"]
    lines = [line for line in code.splitlines() if not line.startswith(("from .", "from codegen"))]
    scope = {"__name__": "gated_product_fp32_test"}
    exec(compile("\n".join(lines), "model.py", "exec"), scope)
    return scope[name]


def test_before_the_feed_forward_rounds_twice():
    assert PLAIN in _llama().render()["model.py"]


def test_after_the_feed_forward_takes_its_product_in_fp32():
    package = _llama()
    GatedProductFp32().apply(package, module="FeedForward")
    model = package.render()["model.py"]
    assert PLAIN not in model and FP32 in model
    compile(model, "model.py", "exec")


def test_the_experts_become_the_packages_own_and_take_their_product_in_fp32():
    package = _moe()
    before = package.render()["model.py"]
    assert "class Experts" not in before
    GatedProductFp32().apply(package, module="Experts")
    model = package.render()["model.py"]
    assert "class Experts" in model
    assert (
        "hidden = F.silu(grouped_mm(rows, self.w1.mT, offs=offsets).float(), inplace=True)" in model
    )
    assert (
        "hidden = (hidden * grouped_mm(rows, self.w3.mT, offs=offsets).float()).to(x.dtype)"
        in model
    )
    # the down projection's product with the routing weights is not a gated product
    assert "out = grouped_mm(hidden, self.w2.mT, offs=offsets) * weights" in model


def test_a_module_without_a_gated_product_is_refused():
    with pytest.raises(EditError):
        GatedProductFp32().apply(_llama(), module="Attention")


def _hf_beam_mlp(x, w1, w3, w2):
    """beam's BeamMLP.forward (modeling_beam.py), its weights given."""
    gate, up = F.linear(x, w1), F.linear(x, w3)
    return F.linear((F.silu(gate.float()) * up.float()).to(gate.dtype), w2)


def test_in_bf16_the_feed_forward_rounds_as_beams_mlp():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 96).bfloat16()
    after = _llama()
    GatedProductFp32().apply(after, module="FeedForward")
    for package, same in ((_llama(), False), (after, True)):
        ffn = _module(package, "FeedForward")(96, 200).bfloat16()
        with torch.no_grad():
            got = ffn(x)
            want = _hf_beam_mlp(x, ffn.w1.weight, ffn.w3.weight, ffn.w2.weight)
        assert torch.equal(got, want) is same


def test_beams_products_are_read_as_fp32_and_llamas_not():
    from codegen.scaffold.target import load_target

    beam = load_target("beam").features
    assert beam.get("ffn.act_fp32") is True
    assert beam.get("ffn.experts_act_fp32") is True
    assert "modeling_beam.py" in beam.evidence["ffn.act_fp32"]
    for model_type in ("llama", "qwen3_moe"):
        features = load_target(model_type).features
        assert features.get("ffn.act_fp32") is False
        assert features.get("ffn.experts_act_fp32") is False
