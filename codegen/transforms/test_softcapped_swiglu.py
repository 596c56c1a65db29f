"""SetSoftcappedSwiglu: before/after on the deepseek_v3 reference with fused experts: the
routed experts' `F.silu(gate) * up` becomes the softcapped SwiGLU with both caps read from
the config fields the analysis names, in fp32 where it read the inputs upcast; the dense
FeedForward stays a plain SwiGLU."""

import pytest

from codegen.errors import CodegenError
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.edits import code_of
from codegen.transforms.fused_experts import FuseExperts
from codegen.transforms.softcapped_swiglu import SetSoftcappedSwiglu

CAPS = {"gate": "hf_config.mlp_gate_softcap", "up": "hf_config.mlp_up_softcap"}


def _package(fp32: bool) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    FuseExperts().apply(package, layout="concat", transposed=False)
    SetSoftcappedSwiglu().apply(package, caps={**CAPS, "fp32": fp32})
    return package


def test_the_experts_cap_gate_and_up_in_fp32():
    package = _package(fp32=True)
    forward = find_method(package.module("model.py"), "Experts", "forward")
    body = "".join(code_of(s) for s in forward.body.body)
    assert "softcapped_swiglu(gate, up, self.gate_cap, self.up_cap)" in body
    files = package.render()
    model = files["model.py"]
    assert "g, u = gate.float(), up.float()" in model
    assert "return (capped_gate * torch.sigmoid(g) * capped_up).to(gate.dtype)" in model
    assert "capped_gate = torch.tanh(g / gate_cap) * gate_cap" in model
    assert "gate_softcap=hf_config.mlp_gate_softcap" in files["args.py"]
    assert "up_softcap=hf_config.mlp_up_softcap" in files["args.py"]
    compile(model, "model.py", "exec")
    dense = find_method(package.module("model.py"), "FeedForward", "forward")
    assert "softcap" not in code_of(dense)


def test_in_the_inputs_dtype_where_not_upcast():
    model = _package(fp32=False).render()["model.py"]
    assert ".float()" not in model.split("def softcapped_swiglu", 1)[1].split("class ", 1)[0]
    assert "return capped_gate * torch.sigmoid(gate) * capped_up" in model


def test_refused_in_a_dense_mlp():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    with pytest.raises(CodegenError):
        SetSoftcappedSwiglu().apply(package, {"ffn.source": "dense"}, caps={**CAPS, "fp32": True})
