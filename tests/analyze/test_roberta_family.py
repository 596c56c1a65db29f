"""RoBERTa-family causal LMs: the prediction head is one module (dense, a `gelu(x)` function
call, norm, decoder) that reads as an MLP, its norm is no final norm; the default positions
count the tokens that are not padding (row pad + 1 on), read from the embeddings module's
trace and its `padding_idx` attribute's config field. On a renamed copy too."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


@pytest.fixture(scope="module")
def roberta():
    return analyze("roberta")


def test_a_head_module_with_a_called_activation_is_the_prediction_head(roberta):
    head = roberta.head
    assert head.transform is True
    assert (head.transform_dense, head.transform_norm) == ("lm_head.dense", "lm_head.layer_norm")
    assert head.projection == "lm_head.decoder"
    assert head.transform_activation == "gelu"  # transformers.activations.gelu, not hidden_act
    assert head.bias_key == "lm_head.bias"  # _tied_weights_keys shares decoder.bias with it
    assert roberta.norm.final is False  # lm_head.layer_norm belongs to the head
    assert "head.transform" not in {u.feature for u in roberta.unsupported}


def test_default_positions_counted_over_the_tokens_that_are_not_padding(roberta):
    assert roberta.embedding.position_padding == "pad_token_id"
    assert roberta.embedding.position_offset == 0  # given positions index the table as they are
    assert "modeling_roberta.py" in roberta.evidence["embedding.position_padding"]


@pytest.mark.parametrize("model_type", ["bert", "megatron-bert", "opt", "gpt2"])
def test_positions_from_a_buffer_or_an_arange_are_not_padded(model_type):
    assert analyze(model_type).embedding.position_padding == ""


def test_a_renamed_copy_reads_the_same(tmp_path, roberta):
    modeling, _ = rename_model("roberta", "zorblax", str(tmp_path))
    renamed = analyze(modeling)
    assert renamed.head == roberta.head
    assert renamed.embedding.position_padding == "pad_token_id"
    assert renamed.norm.final is False


def test_a_head_module_around_the_projection_reads_the_bias_it_shares():
    """BertGeneration's lm_head holds the decoder and the bias _tied_weights_keys gives it."""
    features = analyze("bert-generation")
    assert (features.head.projection, features.head.bias) == ("lm_head.decoder", True)
    assert features.head.bias_key == "lm_head.bias"
    assert set(features.state_dict.tied_keys) == {"lm_head.decoder.weight", "lm_head.decoder.bias"}
    assert "lm_head.bias" in features.state_dict.checkpoint_other_keys


def test_an_embeddings_module_with_more_layers_is_reported_not_planned_without(tmp_path):
    """RoC-BERT concatenates shape and pronunciation tables and projects them: its side
    tables are described (test_bert_family.py). A config without the concatenation
    (concat_input false) runs a branch where the side tables are read only when their ids
    are given: nothing shows how they join, so the module is reported, not planned."""
    from transformers import RoCBertConfig

    assert not {u.feature for u in analyze("roc_bert").unsupported}
    config = tmp_path / "config.json"
    config.write_text(RoCBertConfig(concat_input=False).to_json_string())
    found = {u.feature: u.detail for u in analyze("roc_bert", str(config)).unsupported}
    assert "shape_embed" in found["embedding.module_layers"]
