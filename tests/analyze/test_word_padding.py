"""The word table's padding row (embedding.padding_idx): the config field HF passes as the
table's `padding_idx`, read where the table is built, by structure; on renamed copies too."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize(
    ("model_type", "field", "where"),
    [
        ("llama", "pad_token_id", "modeling_llama.py:342"),  # self.padding_idx, positional
        ("opt", "pad_token_id", "modeling_opt.py:289"),  # a narrower table (word_embed_proj_dim)
        ("gemma2", "pad_token_id", "modeling_gemma2.py:379"),  # an nn.Embedding subclass
        ("roberta", "pad_token_id", "modeling_roberta.py:61"),  # padding_idx=, embeddings module
        ("gpt2", "", "modeling_gpt2.py:490"),  # no padding row
        ("bloom", "", "modeling_bloom.py:424"),
    ],
)
def test_the_field_of_the_padding_row_with_its_evidence(model_type, field, where):
    features = analyze(model_type)
    assert features.embedding.padding_idx == field
    assert features.evidence["embedding.padding_idx"].startswith(where)


@pytest.mark.parametrize("model_type", ["llama", "gemma2", "gpt2"])
def test_a_renamed_copy_reads_the_same(tmp_path, model_type):
    modeling, _ = rename_model(model_type, "zorblax", str(tmp_path))
    assert analyze(modeling).embedding.padding_idx == analyze(model_type).embedding.padding_idx


def _edited_llama(tmp_path, old: str, new: str):
    modeling, _ = rename_model("llama", "zorblax", str(tmp_path))
    with open(modeling) as handle:
        text = handle.read()
    assert old in text
    with open(modeling, "w") as handle:
        handle.write(text.replace(old, new))
    return analyze(modeling)


def test_another_config_field_is_named_and_not_planned(tmp_path):
    """Read from bos_token_id: the field is reported; the rule table has no row mapping a
    field other than pad_token_id, so the plan stops instead of mapping the wrong one."""
    from codegen.analyze.reference import COMPARED

    features = _edited_llama(
        tmp_path, "self.padding_idx = config.pad_token_id", "self.padding_idx = config.bos_token_id"
    )
    assert features.embedding.padding_idx == "bos_token_id"
    assert COMPARED["embedding.padding_idx"]("bos_token_id") == "other"


def test_a_literal_padding_row_is_unsupported(tmp_path):
    features = _edited_llama(
        tmp_path, "self.padding_idx = config.pad_token_id", "self.padding_idx = 0"
    )
    assert features.embedding.padding_idx == ""
    assert "embedding.padding_row" in {u.feature for u in features.unsupported}


def test_a_table_built_without_it_has_none(tmp_path):
    features = _edited_llama(
        tmp_path,
        "nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)",
        "nn.Embedding(config.vocab_size, config.hidden_size)",
    )
    assert features.embedding.padding_idx == ""
    assert "embedding.padding_row" not in {u.feature for u in features.unsupported}
