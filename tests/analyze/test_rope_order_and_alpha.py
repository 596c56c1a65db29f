"""`rope.qk_norm_after_rope` (the q/k norms take the rotated q/k) and `rope.ntk_alpha` (a
rope_parameters key stretching the base once at init), read structurally: a renamed copy of
HunYuan with renamed norms and rope key gives the same answers."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


def _line(features, key: str) -> str:
    where = features.evidence[key].split(" ", 1)[0]
    line = int(where.rsplit(":", 1)[1])
    return open(features.source.modeling, encoding="utf-8").read().splitlines()[line - 1]


@pytest.mark.parametrize(
    ("model_type", "after", "alpha"),
    [("hunyuan_v1_dense", True, "alpha"), ("qwen3", False, None), ("llama", False, None)],
)
def test_norm_order_and_alpha(model_type, after, alpha):
    rope = analyze(model_type).rope
    assert rope.qk_norm_after_rope is after and rope.ntk_alpha == alpha


def test_evidence_points_at_the_code():
    features = analyze("hunyuan_v1_dense")
    assert "self.query_layernorm(query_states)" in _line(features, "rope.qk_norm_after_rope")
    assert '["alpha"] ** (dim / (dim - 2))' in _line(features, "rope.ntk_alpha")
    assert features.rope.type == "default"  # a fixed alpha is not run-time dynamic NTK


def test_renamed_copy(tmp_path):
    modeling, _ = rename_model("hunyuan_v1_dense", "zorblax", str(tmp_path))
    text = open(modeling, encoding="utf-8").read()
    for old, new in {
        "query_layernorm": "q_scale_norm",
        "key_layernorm": "k_scale_norm",
        '["alpha"]': '["stretch"]',
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    open(modeling, "w", encoding="utf-8").write(text)
    rope = analyze(modeling).rope
    assert rope.qk_norm_after_rope is True and rope.ntk_alpha == "stretch"


def test_a_weightless_qk_norm_after_the_head_view_is_per_head():
    """nanochat's q/k RMSNorm holds no weight (no size to read): it norms q after the view
    to heads, so each head alone; and after RoPE."""
    features = analyze("nanochat")
    assert features.attention.qk_norm == "per_head"
    assert features.rope.qk_norm_after_rope is True
