"""Projections wrapped in a module that only hands its input to one inner nn.Linear.

moshi's attention builds q/k/v/o as `MoshiLinear`, whose `__init__` picks an `nn.Linear`
(or, under a constructor flag its text decoder never sets, a per-codebook stack) as
`self.linear` and whose forward returns `self.linear(x)`. The analysis reads each wrapper as
its inner Linear (shape, bias, role), its checkpoint keys keeping the inner attribute
(`q_proj.linear.weight`). The same holds for a renamed copy of the files; a wrapper that
computes anything beyond the delegation stays unread.
"""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files

WRAPPED = tuple(f"self_attn.{p}_proj.linear.weight" for p in "qkvo")


@pytest.fixture(scope="module")
def renamed(tmp_path_factory) -> str:
    path, _ = rename_model("moshi", "zorblax", str(tmp_path_factory.mktemp("renamed")))
    return path


def _analysed(which: str, renamed: str):
    return analyze(model_type_files("moshi")[0] if which == "installed" else renamed)


@pytest.mark.parametrize("which", ["installed", "renamed"])
def test_a_delegating_wrapper_reads_as_its_inner_linear(which, renamed):
    features = _analysed(which, renamed)
    assert features.category == "decoder"
    assert not [u.feature for u in features.unsupported]
    assert features.attention.kind == "mha"
    assert features.attention.qkv_bias is False and features.attention.o_bias is False
    # the checkpoint keeps the wrapper's inner attribute in each projection's keys
    assert set(WRAPPED) <= set(features.state_dict.layer_keys)
    assert not {k for k in features.state_dict.layer_keys if k.endswith("_proj.weight")}


@pytest.mark.parametrize("which", ["installed", "renamed"])
def test_the_word_table_rows_past_the_vocabulary_are_read(which, renamed):
    features = _analysed(which, renamed)
    assert features.embedding.extra_rows == 1  # nn.Embedding(config.vocab_size + 1, ...)
    assert "embedding.extra_rows" in features.reference.delta


@pytest.mark.parametrize("which", ["installed", "renamed"])
def test_switches_of_config_parts_the_decoder_never_reads_are_left_out(which, renamed):
    names = {s.name for s in _analysed(which, renamed).switches}
    # the audio encoder's and depth decoder's sub-configs, and a field filled in from them
    assert not {n for n in names if n.startswith(("audio_encoder_config.", "depth_decoder"))}
    assert "audio_vocab_size" not in names
    # the config class's fallbacks for fields the decoder reads stay switches
    assert {"head_dim", "num_key_value_heads"} <= names


def test_a_wrapper_computing_more_than_the_delegation_stays_unread(tmp_path):
    renamed, _ = rename_model("moshi", "zorblax", str(tmp_path))
    with open(renamed, encoding="utf-8") as fh:
        source = fh.read()
    delegation = "            return self.linear(x)\n"
    assert source.count(delegation) == 1
    with open(renamed, "w", encoding="utf-8") as fh:
        fh.write(source.replace(delegation, "            return self.linear(x) * 2\n"))
    features = analyze(renamed)
    assert "block.layer_form" in [u.feature for u in features.unsupported]
