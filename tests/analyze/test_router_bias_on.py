"""`moe.router_bias_on`: what a selection-only bias is added to before the top-k.

DeepSeek-V3 adds its correction bias to the sigmoid scores; kolibri1 adds it to the raw
logits and scores the picked logits apart (`logits.gather(1, indices).sigmoid()`), which
picks other experts, so the analysis tells the two apart, on a renamed copy too.
"""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


def test_a_bias_added_to_the_raw_logits():
    moe = analyze("kolibri1").moe
    assert moe.router_bias is True and moe.router_bias_on == "logits"
    assert moe.router_bias_key == "gate.e_score_correction_bias"


def test_a_bias_added_to_the_scores():
    moe = analyze("deepseek_v3").moe
    assert moe.router_bias is True and moe.router_bias_on == "scores"


def test_no_selection_bias_is_not_read_into_a_plain_router():
    moe = analyze("qwen3_moe").moe
    assert moe.router_bias is False and moe.router_bias_on == "scores"


def test_a_renamed_copy_reads_the_same(tmp_path):
    modeling, _ = rename_model("kolibri1", "zorblax", str(tmp_path))
    moe = analyze(modeling).moe
    assert moe.router_bias is True and moe.router_bias_on == "logits"
