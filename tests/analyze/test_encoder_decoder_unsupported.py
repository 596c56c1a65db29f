"""An encoder-decoder's causal LM (whisper's, mbart's: decoder layers with a cross-attention
to the encoder's states) is named unsupported, so scaffold stops in one line instead of
writing a package that drops the cross-attention weights and fails verify.

Bidirectional decoders with an optional cross-attention (BERT's `add_cross_attention`, off
by default) and plain decoders are not encoder-decoders and keep no such finding.
"""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.cli import main


def _finding(features) -> str | None:
    return next(
        (u.detail for u in features.unsupported if u.feature == "category.encoder_decoder"), None
    )


@pytest.mark.parametrize("model_type", ["whisper", "mbart"])
def test_a_decoder_with_cross_attention_is_unsupported(model_type) -> None:
    features = analyze(model_type)
    assert features.category == "other"
    assert "cross-attention" in (_finding(features) or "")


def test_a_renamed_encoder_decoder_is_unsupported_too(tmp_path) -> None:
    modeling, _ = rename_model("whisper", "zorblax", str(tmp_path))
    assert "cross-attention" in (_finding(analyze(modeling)) or "")


@pytest.mark.parametrize("model_type", ["bert-generation", "gpt2", "llama"])
def test_decoders_without_an_encoder_keep_no_such_finding(model_type) -> None:
    assert _finding(analyze(model_type)) is None


def test_scaffold_refuses_an_encoder_decoder_in_one_line(tmp_path, capsys) -> None:
    assert main(["scaffold", "whisper", "--out", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cross-attention" in err[0] and "nothing written" in err[0], err
    assert not (tmp_path / "models").exists()
