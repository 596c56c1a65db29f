"""The analysis notes the config.json keys nothing reads, and only those: a field the config
class turns into the layer pattern (`max_window_layers`) or transformers reads to tie the head
(`tie_word_embeddings`) is a switch, so the note that the modeling code ignores it was false."""

from __future__ import annotations

from codegen.analyze.analysis import analyze
from codegen.verify.remote_fixture import neutral_name, remote_folder


def _notes(tmp_path, **config_values) -> list[str]:
    folder = remote_folder(
        "qwen3", tmp_path, name=neutral_name("qwen3"), config_values=config_values
    )
    return [note for note in analyze(str(folder)).notes if "is not read" in note]


def test_switch_fields_are_not_noted_as_unread(tmp_path) -> None:
    notes = " ".join(_notes(tmp_path, max_window_layers=1, tie_word_embeddings=False))
    assert "max_window_layers" not in notes
    assert "tie_word_embeddings" not in notes


def test_a_key_nothing_reads_is_noted(tmp_path) -> None:
    notes = _notes(tmp_path, frobnication_level=3)
    assert "config:frobnication_level=3 is not read by the modeling code" in notes
