"""LayerFfnWidths: each layer's feed-forward sized by its entry of a config list."""

from __future__ import annotations

import libcst.matchers as m

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import findall
from codegen.transforms.layer_ffn_widths import LayerFfnWidths


def test_the_block_builds_its_layers_width():
    package = SourcePackage.from_directory(references_dir() / "llama")
    LayerFfnWidths().apply(package, field="intermediate_size")
    model = package.module("model.py")
    (block,) = findall(model, m.ClassDef(name=m.Name("TransformerBlock")))
    (call,) = findall(block, m.Call(func=m.Name("FeedForward")))
    widths = m.Subscript(value=m.Attribute(m.Name("args"), m.Name("layer_hidden_dims")))
    assert any(m.matches(arg.value, widths) for arg in call.args)
    assert not findall(block, m.Attribute(m.Name("args"), m.Name("hidden_dim")))
    args = package.module("args.py")
    assert findall(args, m.AnnAssign(target=m.Name("layer_hidden_dims")))
    assert findall(
        args,
        m.Arg(
            keyword=m.Name("layer_hidden_dims"),
            value=m.Call(
                func=m.Name("tuple"),
                args=[m.Arg(m.Attribute(m.Name("hf_config"), m.Name("intermediate_size")))],
            ),
        ),
    )
