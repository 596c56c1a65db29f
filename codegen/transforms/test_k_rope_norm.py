"""KRopeNorm: before/after on the deepseek_v3 reference (the rope key rotated as
projected), its checkpoint row, and the module it builds."""

from __future__ import annotations

import libcst.matchers as m

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.k_rope_norm import KRopeNorm

NORM = {"module": "k_rope_only_layernorm", "eps": "norm_eps"}


def test_the_rope_key_is_normed_before_its_rotation():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    applied = m.Assign(
        targets=[m.AssignTarget(m.Name("k_pe"))],
        value=m.Call(
            func=m.Attribute(value=m.Name("self"), attr=m.Name("k_pe_norm")),
            args=[m.Arg(m.Name("k_pe"))],
        ),
    )
    assert not m.findall(package.module("model.py"), applied)
    KRopeNorm().apply(package, norm=NORM)
    model = package.module("model.py")
    assert len(m.findall(model, applied)) == 1
    built = m.Call(
        func=m.Name("RMSNorm"),
        args=[
            m.Arg(m.Attribute(value=m.Name("self"), attr=m.Name("rope_dim"))),
            m.Arg(m.Attribute(value=m.Name("args"), attr=m.Name("norm_eps"))),
        ],
    )
    assert len(m.findall(model, built)) == 1
    # normed before the rotation reads it
    forward = package.render()["model.py"].split("def forward")[1]
    assert forward.index("self.k_pe_norm(k_pe)") < forward.index("self.rotate(k_pe")
    adapter = package.render()["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.self_attn.k_rope_only_layernorm.weight":'
        ' "layers.{}.attention.k_pe_norm.weight"' in adapter
    )


def test_a_default_eps_is_the_norms_own():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    KRopeNorm().apply(package, norm={"module": "k_norm", "eps": "default"})
    built = m.Call(
        func=m.Name("RMSNorm"),
        args=[m.Arg(m.Attribute(value=m.Name("self"), attr=m.Name("rope_dim")))],
    )
    assert len(m.findall(package.module("model.py"), built)) == 1
