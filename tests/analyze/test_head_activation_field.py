"""The config field a prediction head's activation is looked up by is read from the
structure: ModernBERT-decoder's `ACT2FN[config.classifier_activation]`, on a renamed copy
whose field is `head_act_kind`, gives `head.transform_activation_field == "head_act_kind"`
cited at that line; BERT's head reads hidden_act; RoBERTa's, calling `gelu(x)`, none."""

from __future__ import annotations

from pathlib import Path

from analyze_helpers import rename_field, rename_model

from codegen.analyze.analysis import analyze


def test_renamed_copy_records_the_heads_activation_field(tmp_path):
    copy, _ = rename_model("modernbert-decoder", "zorblax", str(tmp_path))
    rename_field(copy, "classifier_activation", "head_act_kind")
    features = analyze(copy)
    head = features.head
    assert (head.transform, head.transform_activation) == (True, "gelu")
    assert head.transform_activation_field == "head_act_kind"
    cite = features.evidence["head.transform_activation_field"]
    assert cite.startswith("modeling_zorblax.py:"), cite
    line = Path(copy).read_text().splitlines()[int(cite.split(":")[1]) - 1]
    assert "ACT2FN[config.head_act_kind]" in line, line
    # the FFN's activation is looked up by a field of its own
    assert features.ffn.activation_field == "hidden_activation"


def test_bert_head_reads_hidden_act_and_a_called_function_no_field():
    assert analyze("megatron-bert").head.transform_activation_field == "hidden_act"
    roberta = analyze("roberta").head
    assert (roberta.transform, roberta.transform_activation_field) == (True, "")
