"""A constant on the query latent is not a softmax scale.

dots3 multiplies its normed query latent by sqrt(hidden / q_lora_rank) before the query
up-projection; the analysis read it as a factor on the queries (OPT's `q_proj(x) *
scaling`) and called the attention's scale custom, so the plan asked attention_scale for a
`self.scaling = config...` line the HF attention does not have. A factor counts only on
what every query projection produced."""

from __future__ import annotations

from codegen.analyze.analysis import analyze


def test_a_rescaled_query_latent_leaves_the_scale_default():
    features = analyze("dots3_note_text")
    assert features.attention.kind == "mla"
    assert features.attention.scale == "default"  # qk_head_dim ** -0.5, as HF passes


def test_a_factor_on_the_queries_still_counts():
    # OPT scales q_proj(x) by head_dim ** -0.5 and hands the kernel 1.0: the default scale
    features = analyze("opt")
    assert features.attention.scale == "default"
    assert "attention.scale" not in {u.feature for u in features.unsupported}
