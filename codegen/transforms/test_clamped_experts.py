"""ClampExperts: before/after on the deepseek_v3 reference with fused experts and with its
own stacked gate and up (the shared experts' activation and product in two statements): the
routed experts' `F.silu(gate) * up` clamps both branches to `swiglu_limit`, read from the
config field the analysis names; the dense FeedForward stays unclamped."""

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.clamped_experts import ClampExperts
from codegen.transforms.edits import code_of
from codegen.transforms.fused_experts import FuseExperts


def test_the_experts_clamp_gate_and_up():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    FuseExperts().apply(package, layout="concat", transposed=False)
    ClampExperts().apply(package, limit="swiglu_limit")
    forward = find_method(package.module("model.py"), "Experts", "forward")
    body = "".join(code_of(s) for s in forward.body.body)
    assert "hidden = F.silu(gate.clamp(max=self.limit)) * up.clamp(-self.limit, self.limit)" in body
    files = package.render()
    assert "swiglu_limit=hf_config.swiglu_limit" in files["args.py"]
    assert "self.limit = limit" in files["model.py"]
    dense = find_method(package.module("model.py"), "FeedForward", "forward")
    assert "clamp" not in code_of(dense)


def test_separate_gate_and_up_are_clamped_too():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    ClampExperts().apply(package, limit="swiglu_limit")
    forward = find_method(package.module("model.py"), "Experts", "forward")
    body = "".join(code_of(s) for s in forward.body.body)
    gate = "grouped_mm(rows, self.w1.mT, offs=offsets)"
    assert f"hidden = F.silu({gate}.clamp(max=self.limit))" in body
    assert "grouped_mm(rows, self.w3.mT, offs=offsets).clamp(-self.limit, self.limit)" in body
    assert "hidden = hidden *" not in body
