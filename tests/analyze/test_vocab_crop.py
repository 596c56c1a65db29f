"""The logits cut to a config field's width (head.vocab_crop): a slice of the head's output
by a config field, read from the causal LM's forward by structure; on renamed copies too."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize(
    ("model_type", "field", "where"),
    [
        # through a local, behind a guard the default config (None) does not enter
        ("inkling_text", "unpadded_vocab_size", "modeling_inkling.py:810"),
        # after a softcap module, read as self.config.X
        ("inkling2_text", "unpadded_vocab_size", "modeling_inkling2.py:1390"),
        ("llama", "", "modeling_llama.py:"),
        ("gpt2", "", "modeling_gpt2.py:"),  # `lm_logits[..., :-1, :]` shifts the sequence
    ],
)
def test_the_field_the_logits_are_cut_to_with_its_evidence(model_type, field, where):
    features = analyze(model_type)
    assert features.head.vocab_crop == field
    assert features.evidence["head.vocab_crop"].startswith(where)


def test_a_renamed_copy_reads_the_same(tmp_path):
    modeling, _ = rename_model("inkling_text", "zorblax", str(tmp_path))
    assert analyze(modeling).head.vocab_crop == "unpadded_vocab_size"


def _edited(tmp_path, old: str, new: str):
    dest = tmp_path / str(len(list(tmp_path.iterdir())))
    modeling, _ = rename_model("inkling2_text", "zorblax", str(dest))
    with open(modeling) as handle:
        text = handle.read()
    assert text.count(old) == 1
    with open(modeling, "w") as handle:
        handle.write(text.replace(old, new))
    return analyze(modeling).head


def test_a_slice_of_another_axis_or_by_no_field_is_no_cut(tmp_path):
    cut = "logits = logits[..., : self.config.unpadded_vocab_size]"
    assert _edited(tmp_path, cut, cut.replace("[...,", "[:, :,")).vocab_crop
    # the sequence axis of (batch, seq, vocab) logits
    assert not _edited(
        tmp_path, cut, "logits = logits[:, : self.config.unpadded_vocab_size]"
    ).vocab_crop
    # a bound that is no config field
    assert not _edited(tmp_path, cut, "logits = logits[..., :100]").vocab_crop
