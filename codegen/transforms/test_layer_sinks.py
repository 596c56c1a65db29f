"""LayerSinks: before/after on the llama reference with sinks added, and which layers of the
built package have them."""

from __future__ import annotations

import importlib
import sys

import libcst.matchers as m
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.attention_sinks import AddAttentionSinks
from codegen.transforms.edits import EditError
from codegen.transforms.layer_sinks import LayerSinks

RULE = 'hf_config.layer_types[i] == "sliding_attention"'


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    AddAttentionSinks().apply(package)
    LayerSinks().apply(package, rule=RULE)
    return package


def test_sinks_built_on_the_listed_layers_and_the_softmax_branches():
    model = _package().module("model.py")
    sinks = m.Attribute(value=m.Name("self"), attr=m.Name("sinks"))
    built = m.Assign(targets=[m.AssignTarget(sinks)], value=m.IfExp(orelse=m.Name("None")))
    assert len(m.findall(model, built)) == 1
    (branch,) = m.findall(model, m.If(test=m.Comparison(left=sinks)))
    concatenated = m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name("cat")))
    assert m.findall(branch.body, concatenated)  # the sink column on their layers
    assert not m.findall(branch.orelse, concatenated) and not m.findall(branch.orelse, sinks)
    softmax = m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name("softmax")))
    assert m.findall(branch.orelse, softmax)
    args = _package().module("args.py")
    assert m.findall(args, m.Arg(keyword=m.Name("sink_layers")))


def test_the_package_builds_sinks_where_the_rule_holds(tmp_path):
    folder = tmp_path / "gen_layer_sinks"
    folder.mkdir()
    for filename, text in _package().render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_layer_sinks.args")
        model_module = importlib.import_module("gen_layer_sinks.model")
    finally:
        sys.path.remove(str(tmp_path))
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=16,
    )
    config.layer_types = ["full_attention", "sliding_attention", "full_attention"]
    args = args_module.ModelArgs.from_hf_config(config)
    assert args.sink_layers == (1,)
    model = model_module.Model(args)
    assert [layer.attention.sinks is not None for layer in model.layers] == [False, True, False]
    assert model(torch.randint(0, 16, (1, 5))).shape == (1, 5, 16)


def test_both_branches_free_their_scores_before_the_output_projection(tmp_path):
    """The sink layers drop their scores and logits after the softmax, the others their
    scores (`add_attention_sinks` frees them; the branch keeps that on both sides): while
    `wo` runs, either holds only the probabilities, as HF's eager function on return."""
    from codegen.transforms.testing import held_at_projection

    folder = tmp_path / "gen_layer_sinks_freed"
    folder.mkdir()
    for filename, text in _package().render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_layer_sinks_freed.args")
        model_module = importlib.import_module("gen_layer_sinks_freed.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(dim=32, n_heads=4, n_kv_heads=2, head_dim=8, sink_layers=(1,))
    seq = 6
    rope = (torch.ones(2, seq, 8), torch.zeros(2, seq, 8))
    future = torch.full((seq, seq), float("-inf")).triu(1)
    for layer_id in (0, 1):
        attention = model_module.Attention(args, layer_id).eval()
        assert (attention.sinks is not None) is (layer_id == 1)
        held = held_at_projection(attention, seq, torch.randn(2, seq, 32), rope, future)
        assert held == {"probs"}, layer_id


def test_without_sinks_to_restrict_it_fails():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError):
        LayerSinks().apply(package, rule=RULE)
