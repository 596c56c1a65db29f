"""block.attention_residuals: inkling2's block attention residuals read from structure. The
depth attentions (a learned query attending over the stacked block states, nothing
projected) are no token attention: the decoder's attention is its own self-attention, the
layer norms sit before both sublayers. The whole decoder's full layers read three queries,
each output through a norm of its own into the attention's queries', keys' and values'
inputs: read, with where each goes (planned and verified in
tests/scaffold/test_inkling2_residual_queries_package.py, the single-query form in
tests/scaffold/test_inkling2_attention_residuals_package.py); outputs read otherwise are
named unsupported in one line; inkling's plain residual layer has none."""

from __future__ import annotations

import re

import pytest

from codegen.analyze.analysis import analyze

pytest.importorskip("transformers.models.inkling2")


def test_inkling2_block_attention_residuals_are_read():
    """Its full layers read their queries, keys and values through three queries of one
    depth module, the others one: read, no line names these modules."""
    features = analyze("inkling2_text")
    fact = features.block.attention_residuals
    assert fact["layer"]["attention_input"]["queries"] == [1, 3]
    assert fact["layer"]["attention_input"]["wide"] == [5, 11, 17, 23, 29, 35, 41, 47]
    assert fact["layer"]["mlp_input"]["queries"] == [1]
    site = features.evidence["block.attention_residuals"]
    assert site.startswith("modeling_inkling2.py:")
    # the depth attention is not read as the decoder's attention (its site, its norm)
    assert features.evidence["attention.kind"] != site
    assert features.norm.placement == "pre"
    assert "block.layer_modules" not in {f.feature for f in features.unsupported}


def test_a_plain_residual_has_none():
    pytest.importorskip("transformers.models.inkling")
    assert analyze("inkling_text").block.attention_residuals is None


READS = (
    ("q_input_layernorm", "hidden_states"),
    ("k_input_layernorm", "key_hidden_states"),
    ("v_input_layernorm", "value_hidden_states"),
)


def _layer_modules(features) -> str:
    (found,) = [f for f in features.unsupported if f.feature == "block.layer_modules"]
    return found.detail


def test_where_each_of_the_three_queries_goes_is_read():
    """The full layers' three outputs, each through a norm of its own into the attention's
    queries', keys' and values' inputs: read from the layer's traced forward."""
    fact = analyze("inkling2_text").block.attention_residuals
    assert fact["layer"]["attention_input"]["reads"] == READS


def test_on_a_renamed_copy_and_read_otherwise(tmp_path):
    from analyze_helpers import rename_model

    modeling, _ = rename_model("inkling2_text", "zorblax", str(tmp_path / "renamed"))
    fact = analyze(modeling).block.attention_residuals
    assert fact["layer"]["attention_input"]["reads"] == READS
    # the keys' norm reading the queries' output: the outputs are no longer one each
    modeling, _ = rename_model("inkling2_text", "zorblax", str(tmp_path / "edited"))
    with open(modeling) as handle:
        text = handle.read()
    old = "self.k_input_layernorm(key_hidden_states)"
    assert text.count(old) == 1
    with open(modeling, "w") as handle:
        handle.write(text.replace(old, "self.k_input_layernorm(query_hidden_states)"))
    features = analyze(modeling)
    assert features.block.attention_residuals is None
    detail = _layer_modules(features)
    assert detail.startswith("block attention residuals")
    assert "attention_input (1 or 3 queries)" in detail and "several queries" in detail
    assert "attention_input on layers 5,11,17,23,29,35,41,47: its outputs read otherwise" in detail


def test_three_queries_on_other_layers_than_the_attention_they_feed(tmp_path):
    """A full layer whose depth module reads one query: the three-query form no longer holds
    exactly on the layers of the attention class its outputs feed, named with both."""
    from analyze_helpers import rename_model

    modeling, _ = rename_model("inkling2_text", "zorblax", str(tmp_path))
    with open(modeling) as handle:
        text = handle.read()
    old = "(config, num_queries=3) if layer_idx > 0"
    assert text.count(old) == 1
    with open(modeling, "w") as handle:
        handle.write(
            text.replace(old, "(config, num_queries=3 if layer_idx > 5 else 1) if layer_idx > 0")
        )
    features = analyze(modeling)
    assert features.block.attention_residuals is None
    detail = _layer_modules(features)
    assert re.search(
        r"attention_input on layers 11,17,23,29,35,41,47: its outputs taken by"
        r" \w+FullAttention, which layers 5,11,17,23,29,35,41,47 hold",
        detail,
    ), detail
