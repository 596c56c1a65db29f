"""`moe.router_zero_init`: HF's `_init_weights` zeroes the router projection for the
router's class, found through the class the analysis built the router from (any names)."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize(("model_type", "zeroed"), [("afmoe", True), ("qwen3_moe", False)])
def test_router_zero_init(model_type, zeroed):
    features = analyze(model_type)
    assert features.moe.router_zero_init is zeroed
    if zeroed:
        where = features.evidence["moe.router_zero_init"]
        line = int(where.rsplit(":", 1)[1])
        source = open(features.source.modeling, encoding="utf-8").read().splitlines()
        assert "zeros_(module.gate.weight)" in source[line - 1]


def test_renamed_copy_with_a_renamed_router_projection(tmp_path):
    modeling, _ = rename_model("afmoe", "zorblax", str(tmp_path))
    text = open(modeling, encoding="utf-8").read()
    edits = {
        "self.gate = nn.Linear(config.hidden_size, config.num_experts": (
            "self.scorer = nn.Linear(config.hidden_size, config.num_experts"
        ),
        "router_logits = self.gate(hidden_states)": "router_logits = self.scorer(hidden_states)",
        "init.zeros_(module.gate.weight)": "init.zeros_(module.scorer.weight)",
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    open(modeling, "w", encoding="utf-8").write(text)
    assert analyze(modeling).moe.router_zero_init is True
