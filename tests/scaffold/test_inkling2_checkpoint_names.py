"""A real Inkling-2 checkpoint keeps its own key names (`model.llm.layers.N.attn.wq_du`,
`attn.q_l2_clip.scale`, `attn.attn_sink_proj`...): transformers renames them on load with
regex renamings, which the analysis reverses (capture groups, layer indices as `{}`), so the
adapter's rows read the names on disk. Checked against a checkpoint transformers itself
saves: every tensor of a sliding layer's attention parts built here (projections, relative
table, clips, sinks) and of its norms has a row. The block residuals' queries are layer
tensors the checkpoint keeps in lists outside the layers, the attention's from the second
layer on (`attn_res.attn_queries.{i}` is layer i + 1's, an index offset transformers shifts
on load): the rows read them there (`{-1}`: the adapter's shifted layer index), and a saved
checkpoint loads each into its layer's module."""

from __future__ import annotations

import ast
from types import SimpleNamespace

import pytest
import torch

from codegen.adapter import StateDictAdapter
from codegen.analyze.analysis import analyze
from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.align_hf_keys import AlignHfKeys
from codegen.transforms.attention_residuals import AttentionResiduals
from codegen.transforms.l2_clips import L2Clips
from codegen.transforms.no_rope import NoRope
from codegen.transforms.relative_position_bias import RelativePositionBias
from codegen.transforms.token_sinks import TokenSinks
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.tiny_config import tiny_config

pytest.importorskip("transformers.models.inkling2")


@pytest.fixture(scope="module")
def features():
    return analyze("inkling2_text")


def _rows(package) -> dict[str, str]:
    tree = ast.parse(package.render()["state_dict_adapter.py"])
    table = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and node.targets[0].id == "from_hf_map"
    )
    return ast.literal_eval(table)


def test_the_layer_keys_are_the_checkpoints_own(features):
    sd = features.state_dict
    assert sd.checkpoint_prefix == "model.llm.layers"
    assert "attn.q_l2_clip.scale" in sd.checkpoint_layer_keys
    assert "attn.attn_sink_proj.weight" in sd.checkpoint_layer_keys
    assert not any("not applied" in note for note in features.notes)
    # every renaming is reversed; the experts' fused gate/up tensor is stored with its rows
    # interleaved (de-interleaved on load: the adapter's `interleaved` table)
    assert "state_dict.conversion" not in {u.feature for u in features.unsupported}
    assert sd.interleaved == (("mlp.experts.w13_weight", 1),)
    assert "mlp.experts.w13_weight" in sd.checkpoint_layer_keys
    # layer tensors in lists of their own, one of them from the second layer on
    assert "model.llm.attn_res.mlp_queries.{}" in sd.checkpoint_other_keys
    assert "model.llm.attn_res.attn_queries.{-1}" in sd.checkpoint_other_keys


def test_a_saved_checkpoints_attention_names_have_rows(tmp_path, features):
    package = SourcePackage.from_directory(references_dir() / "llama")
    NoRope().apply(package)
    RelativePositionBias().apply(package, bias=features.attention.rel_bias)
    L2Clips().apply(package, clips=features.attention.l2_clips)
    TokenSinks().apply(package, projection=features.attention.sink_projection)
    sd = features.state_dict
    AlignHfKeys().apply(
        package,
        features,
        prefix=sd.checkpoint_prefix,
        layer_keys=[key.split(" [")[0] for key in sd.checkpoint_layer_keys],
        other_keys=list(sd.checkpoint_other_keys),
    )
    rows = _rows(package)
    save_checkpoint(random_hf_model(tiny_config("inkling2_text")), tmp_path)
    saved = set(load_checkpoint(tmp_path))
    # the layer's tensors of the parts this package builds (its convolutions and output
    # gate are other rules', its MoE and block residuals no rule's yet)
    attention = {
        key
        for key in saved
        if key.startswith("model.llm.layers.0.")
        and not key.startswith(("model.llm.layers.0.mlp.", "model.llm.layers.0.mlp_s"))
        and "sconv" not in key
        and "gate_attn" not in key
    }
    assert "model.llm.layers.0.attn.q_l2_clip.scale" in attention
    read = {hf.replace("{}", "0") for hf in rows}
    assert attention <= read, sorted(attention - read)
    assert rows["model.llm.layers.{}.attn.q_l2_clip.scale"] == "layers.{}.attention.q_clip.scale"


# the single-query form of the block residuals (the full layers' three queries are another
# rule's): a module per sublayer, the attention's from the second layer on, one at the end
RESIDUALS = {
    "layer": {
        "attention_input": {"queries": [1], "layers": [1, 2, 3, 4, 5]},
        "mlp_input": {"queries": [1], "layers": [0, 1, 2, 3, 4, 5]},
    },
    "final": "final_input",
    "boundary": {"field": "n_layers_per_attn_res_block", "flag": "is_block_boundary"},
    "eps": 1e-6,
}


def test_a_saved_checkpoints_residual_queries_load_into_their_layers(tmp_path, features):
    package = SourcePackage.from_directory(references_dir() / "llama")
    AttentionResiduals().apply(package, features, residuals=RESIDUALS)
    sd = features.state_dict
    AlignHfKeys().apply(
        package,
        features,
        prefix=sd.checkpoint_prefix,
        layer_keys=[key.split(" [")[0] for key in sd.checkpoint_layer_keys],
        other_keys=list(sd.checkpoint_other_keys),
    )
    rows = _rows(package)
    assert rows["model.llm.attn_res.attn_queries.{-1}"] == "layers.{}.attention_input.query"
    assert rows["model.llm.attn_res.mlp_queries.{}"] == "layers.{}.ffn_input.query"
    assert rows["model.llm.attn_res.output_query"] == "final_input.query"
    model = random_hf_model(tiny_config("inkling2_text"))
    save_checkpoint(model, tmp_path)
    saved = {k: v for k, v in load_checkpoint(tmp_path).items() if ".attn_res." in k}
    adapter = type(
        "Adapter",
        (StateDictAdapter,),
        {"from_hf_map": {hf: house for hf, house in rows.items() if ".attn_res." in hf}},
    )(SimpleNamespace(n_layers=6))
    house = adapter.from_hf(saved)
    own = model.state_dict()
    for name, tensor in house.items():
        hf_name = "model." + name.replace("ffn_input", "mlp_input")
        assert torch.equal(tensor, own[hf_name]), name
    assert len(house) == 5 + 6 + 1
    assert adapter.to_hf(house).keys() == saved.keys()


def test_a_saved_checkpoints_interleaved_experts_load_as_transformers_loads_them(
    tmp_path, features
):
    """save_pretrained stores the experts' gate and up rows interleaved (`w13_weight`); the
    adapter's `interleaved` table, read from the conversion, gives HF's module tensor
    ([gate | up]) and saves the rows back as stored, bit for bit."""
    model = random_hf_model(tiny_config("inkling2_text"), 0)
    save_checkpoint(model, tmp_path)
    saved = {k: v for k, v in load_checkpoint(tmp_path).items() if ".mlp.experts." in k}
    adapter = type(
        "Adapter",
        (StateDictAdapter,),
        {
            "from_hf_map": {
                "model.llm.layers.{}.mlp.experts.w13_weight": "layers.{}.moe.experts.w13",
                "model.llm.layers.{}.mlp.experts.w2_weight": "layers.{}.moe.experts.w2",
            },
            "interleaved": dict(features.state_dict.interleaved),
        },
    )(SimpleNamespace(n_layers=6))
    house = adapter.from_hf(saved)
    own = model.state_dict()
    for name, tensor in house.items():
        hf_name = name.replace("moe.experts.w13", "mlp.experts.gate_up_proj")
        hf_name = "model." + hf_name.replace("moe.experts.w2", "mlp.experts.down_proj")
        assert torch.equal(tensor, own[hf_name]), name
    back = adapter.to_hf(house)
    assert back.keys() == saved.keys()
    assert all(torch.equal(back[key], saved[key]) for key in saved)
