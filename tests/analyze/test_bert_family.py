"""BERT-family causal LMs (their *ForCausalLM, is_decoder=True): the output projection in a
sibling module of the attention (`attention.output.dense`), the FFN split across two modules
and run through `apply_chunking_to_forward`, norms called inside the attention block; and
their embeddings module (word, position, token-type tables, a norm) and prediction head
(dense, activation, norm, projection) described, on renamed copies too."""

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
def test_embedding_and_head_modules_are_described(model_type):
    features = analyze(model_type)
    base = "rembert" if model_type == "rembert" else "bert"
    assert features.attention.o_bias is True
    assert features.ffn.kind == "gelu_mlp"
    embedding = features.embedding
    assert embedding.module is True
    assert embedding.word_table == f"{base}.embeddings.word_embeddings"
    assert embedding.token_type_table == f"{base}.embeddings.token_type_embeddings"
    assert (embedding.positions, embedding.position_table) == (
        "learned",
        f"{base}.embeddings.position_embeddings",
    )
    # megatron-bert moves the embeddings' norm into the layers (its module has none)
    norm = "" if model_type == "megatron-bert" else f"{base}.embeddings.LayerNorm"
    assert embedding.module_norm == norm
    head = features.head
    assert (head.transform, head.bias) == (True, True)
    assert head.transform_activation == features.ffn.activation  # both read hidden_act
    assert head.projection == "cls.predictions.decoder"
    assert head.transform_norm.startswith("cls.predictions.")
    assert f"{base}.embeddings.word_embeddings.weight" in features.state_dict.other_keys
    found = {u.feature for u in features.unsupported}
    assert not found & {"embedding.module_layers", "head.transform_layers"}


def test_a_tied_head_bias_is_read_from_the_parameter_it_shares(megatron):
    assert megatron.head.bias_key == "cls.predictions.bias"
    assert set(megatron.state_dict.tied_keys) == {
        "cls.predictions.decoder.weight",
        "cls.predictions.decoder.bias",
    }


def test_a_renamed_copy_reads_the_same(tmp_path, megatron):
    modeling, _ = rename_model("megatron-bert", "zorblax", str(tmp_path))
    renamed = analyze(modeling)
    assert renamed.attention.o_bias is True
    assert renamed.ffn.block_names == megatron.ffn.block_names
    assert renamed.norm.block_names == megatron.norm.block_names
    assert {u.feature for u in renamed.unsupported} == {u.feature for u in megatron.unsupported}
    assert renamed.embedding == megatron.embedding
    assert renamed.head == megatron.head


@pytest.mark.parametrize("model_type", ["gpt2", "opt", "llama"])
def test_decoders_with_their_own_tables_report_nothing_new(model_type):
    found = {u.feature for u in analyze(model_type).unsupported}
    assert not found & {"embedding.module_layers", "head.transform_layers"}


@pytest.mark.parametrize("model_type", ["rembert", "big_bird"])
def test_post_ln_layers_norm_each_residual_sum_and_end_without_a_final_norm(model_type):
    """BERT's SelfOutput/Output norm dense(x) + x; the FFN is bare linears inlined in the
    layer (no MLP module), its up projection read as the MLP's entry. The embeddings' and
    the head's norms are not a final norm."""
    features = analyze(model_type)
    assert features.norm.placement == "post_residual"
    assert features.norm.final is False
    names = dict(features.norm.block_names)
    assert names["post_attention_norm"] == "attention.output.LayerNorm"
    assert names["post_ffn_norm"] == "output.LayerNorm"
    # the MLP reads the attention's post-norm: that module is not a norm of the MLP's own
    assert "ffn_norm" not in names


def test_narrower_tables_and_head_read_their_widths_and_projection():
    """RemBERT: tables input_embedding_size wide, projected to hidden_size by the encoder's
    embedding_hidden_mapping_in; the head works in output_embedding_size."""
    features = analyze("rembert")
    assert features.embedding.module_width == "input_embedding_size"
    assert features.embedding.module_projection == "rembert.encoder.embedding_hidden_mapping_in"
    assert features.head.transform_width == "output_embedding_size"
    assert features.head.bias_key == "cls.predictions.decoder.bias"
    megatron = analyze("megatron-bert")
    assert (megatron.embedding.module_width, megatron.head.transform_width) == ("", "")


ROC_TABLES = (
    (
        "roc_bert.embeddings.shape_embed",
        "shape_vocab_size",
        "shape_embed_dim",
        "enable_shape",
        "input_shape_ids",
    ),
    (
        "roc_bert.embeddings.pronunciation_embed",
        "pronunciation_vocab_size",
        "pronunciation_embed_dim",
        "enable_pronunciation",
        "input_pronunciation_ids",
    ),
)


def test_side_tables_concatenated_and_mapped_are_described():
    """RoCBert: shape and pronunciation rows concatenated to the token rows (in that order),
    mapped back by map_inputs_layer (built under concat_input), then the token-type and
    position rows and the norm as BERT's; each side table switched by its own field and
    indexed by a forward input of its own (zeros when not given)."""
    features = analyze("roc_bert")
    embedding = features.embedding
    assert embedding.module is True
    assert embedding.word_table == "roc_bert.embeddings.word_embeddings"
    assert embedding.token_type_table == "roc_bert.embeddings.token_type_embeddings"
    assert embedding.module_norm == "roc_bert.embeddings.LayerNorm"
    assert embedding.side_tables == ROC_TABLES
    assert embedding.side_projection == "roc_bert.embeddings.map_inputs_layer"
    assert embedding.side_switch == "concat_input"
    assert "map_inputs_layer when concat_input" in features.evidence["embedding.side_tables"]
    assert not {u.feature for u in features.unsupported}


def test_a_renamed_roc_bert_reads_the_same(tmp_path):
    modeling, _ = rename_model("roc_bert", "zorblax", str(tmp_path))
    renamed = analyze(modeling).embedding
    assert renamed.side_tables == tuple(
        (path.replace("roc_bert", "zorblax"), *rest) for path, *rest in ROC_TABLES
    )
    assert renamed.side_projection == "zorblax.embeddings.map_inputs_layer"


@pytest.mark.parametrize("model_type", ["bert", "rembert"])
def test_bert_tables_have_no_side_tables(model_type):
    assert analyze(model_type).embedding.side_tables == ()
