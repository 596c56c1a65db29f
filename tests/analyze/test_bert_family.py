"""BERT-family causal LMs (their *ForCausalLM, is_decoder=True): the output projection in a
sibling module of the attention (`attention.output.dense`), the FFN split across two modules
and run through `apply_chunking_to_forward`, norms called inside the attention block; and
the parts no rule realises yet (embeddings and prediction head modules) reported, on
renamed copies too."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


@pytest.fixture(scope="module")
def megatron():
    return analyze("megatron-bert")


def test_the_output_projection_of_a_sibling_module_is_found(megatron):
    assert megatron.attention.o_bias is True
    assert "modeling_megatron_bert.py" in megatron.evidence["attention.o_bias"]


def test_the_feed_forward_split_across_two_modules_and_chunked_is_a_gelu_mlp(megatron):
    assert (megatron.ffn.kind, megatron.ffn.bias) == ("gelu_mlp", True)
    assert megatron.ffn.block_names == (
        ("up_proj", "intermediate.dense"),
        ("down_proj", "output.dense"),
    )


def test_a_norm_called_inside_the_attention_block_is_named_by_its_path(megatron):
    assert megatron.norm.placement == "pre"
    assert dict(megatron.norm.block_names)["attention_norm"] == "attention.ln"


@pytest.mark.parametrize("model_type", ["megatron-bert", "rembert", "big_bird"])
def test_embedding_and_head_modules_are_reported_not_guessed(model_type):
    features = analyze(model_type)
    assert features.attention.o_bias is True
    assert features.ffn.kind == "gelu_mlp"
    found = {u.feature for u in features.unsupported}
    assert {"embedding.module", "head.transform"} <= found


def test_a_renamed_copy_reads_the_same(tmp_path, megatron):
    modeling, _ = rename_model("megatron-bert", "zorblax", str(tmp_path))
    renamed = analyze(modeling)
    assert renamed.attention.o_bias is True
    assert renamed.ffn.block_names == megatron.ffn.block_names
    assert renamed.norm.block_names == megatron.norm.block_names
    assert {u.feature for u in renamed.unsupported} == {u.feature for u in megatron.unsupported}


@pytest.mark.parametrize("model_type", ["gpt2", "opt", "llama"])
def test_decoders_with_their_own_tables_report_nothing_new(model_type):
    found = {u.feature for u in analyze(model_type).unsupported}
    assert not found & {"embedding.module", "head.transform"}
