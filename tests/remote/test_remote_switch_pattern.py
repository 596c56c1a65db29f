"""The layer pattern of a switch setting's toy for a remote-code folder: a switch whose
setting changes the pattern the config class derives gets the class's pattern again (a
window pattern is not kept with the window switched off), any other keeps the folder's own
(a DeepSeek-V4 copy whose layers all slide stays sliding with tied embeddings; the class's
default pattern is compressed attention, which that copy's package refuses)."""

from __future__ import annotations

import pytest

from codegen.verify.remote import load_remote, remote_toy_config
from codegen.verify.remote_fixture import remote_folder, toy_config_dict


def test_a_switch_the_pattern_does_not_read_keeps_the_folders(tmp_path) -> None:
    pytest.importorskip("transformers.models.deepseek_v4")
    layers = toy_config_dict("deepseek_v4")["num_hidden_layers"]
    sliding = ["sliding_attention"] * layers
    folder = remote_folder("deepseek_v4", tmp_path, "quillmere", {"layer_types": sliding})
    remote = load_remote(folder, trust_remote_code=True)
    assert remote_toy_config(remote).layer_types == sliding
    tied = remote_toy_config(remote, tie_word_embeddings=True)
    assert tied.tie_word_embeddings is True and tied.layer_types == sliding
    kinds = ["moe"] * layers
    assert remote_toy_config(remote, mlp_layer_types=kinds).layer_types == sliding


def test_a_switch_the_pattern_reads_derives_it_again(tmp_path) -> None:
    values = {"use_sliding_window": True, "max_window_layers": 1}
    folder = remote_folder("qwen2", tmp_path, "windmere", values)
    remote = load_remote(folder, trust_remote_code=True)
    assert "sliding_attention" in remote_toy_config(remote).layer_types
    off = remote_toy_config(remote, use_sliding_window=False)
    assert set(off.layer_types) == {"full_attention"}
