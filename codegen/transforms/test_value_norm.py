"""ValueNorm: before/after on the qwen3 and llama references; the weightless norm it builds
is HF's gemma4 `v_norm`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
import pytest
import torch
from torch import nn

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.testing import package_of
from codegen.transforms.value_norm import ValueNorm

# v = self.v_norm(self.wv(x).view(...)).transpose(1, 2)
_NORMED_V = m.Assign(
    targets=[m.AssignTarget(m.Name("v"))],
    value=m.Call(
        func=m.Attribute(
            value=m.Call(
                func=m.Attribute(value=m.Name("self"), attr=m.Name("v_norm")),
                args=[
                    m.Arg(
                        m.Call(
                            func=m.Attribute(
                                value=m.Call(
                                    func=m.Attribute(value=m.Name("self"), attr=m.Name("wv"))
                                ),
                                attr=m.Name("view"),
                            )
                        )
                    )
                ],
            ),
            attr=m.Name("transpose"),
        )
    ),
)


def _norm_built(norm: str) -> m.Assign:
    return m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("v_norm")))],
        value=m.Call(
            func=m.Name(norm), args=[m.Arg(m.Attribute(attr=m.Name("head_dim"))), m.Arg()]
        ),
    )


def _normed(reference: str, weight: bool) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / reference)
    ValueNorm().apply(package, weight=weight)
    return package


def test_weightless_value_norm_per_head_and_no_checkpoint_row():
    package = _normed("qwen3", weight=False)
    model = package.module("model.py")
    assert len(m.findall(model, _norm_built("PlainRMSNorm"))) == 1
    assert len(m.findall(model, _NORMED_V)) == 1
    assert m.findall(model, m.ClassDef(name=m.Name("PlainRMSNorm")))
    assert "v_norm" not in package.render()["state_dict_adapter.py"]


def test_learned_value_norm_maps_its_weight():
    package = _normed("llama", weight=True)
    model = package.module("model.py")
    assert len(m.findall(model, _norm_built("RMSNorm"))) == 1
    assert len(m.findall(model, _NORMED_V)) == 1
    assert not m.findall(model, m.ClassDef(name=m.Name("PlainRMSNorm")))
    table = package.render()["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.v_norm.weight": "layers.{}.attention.v_norm.weight"' in table


def test_plain_norm_is_gemma4s_weightless_v_norm():
    gemma4 = pytest.importorskip("transformers.models.gemma4.modeling_gemma4")
    module = _normed("qwen3", weight=False).module("model.py")
    (cls,) = m.findall(module, m.ClassDef(name=m.Name("PlainRMSNorm")))
    namespace = {"torch": torch, "nn": nn}
    exec(cst.Module([cls]).code, namespace)
    x = torch.randn(2, 5, 3, 40)
    hf = gemma4.Gemma4RMSNorm(40, eps=1e-6, with_scale=False)
    torch.testing.assert_close(namespace["PlainRMSNorm"](40, 1e-6)(x), hf(x))


def test_no_value_heads_is_an_error():
    package = package_of(
        {
            "model.py": (
                "class Attention(nn.Module):\n"
                "    def __init__(self, args):\n"
                "        self.wo = nn.Linear(args.dim, args.dim)\n"
                "    def forward(self, x):\n"
                "        return self.wo(x)\n"
            ),
            "state_dict_adapter.py": "from_hf_map = {}\n",
        }
    )
    with pytest.raises(EditError):
        ValueNorm().apply(package, weight=False)
