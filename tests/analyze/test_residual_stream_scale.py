"""block.residual_scale tells a scaled sublayer output (granite's residual_multiplier, which
the residual_scale rule realises) from a scaled residual stream (beam, doge), which no rule
realises: that one is one unsupported line, not a transform failing mid-scaffold."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def _gap(features):
    return [u for u in features.unsupported if u.feature == "block.residual_scale"]


@pytest.mark.parametrize(
    "model_type",
    [
        "beam",  # h / sqrt(k) + residual * sqrt((k - 1) / k), k from the layer index
        "doge",  # learned per-channel weights times the residual
    ],
)
def test_a_scaled_stream_is_one_unsupported_line(model_type: str) -> None:
    features = analyze(model_type)
    assert features.block.residual_scale == "scaled_stream"
    (gap,) = _gap(features)
    assert "residual stream itself scaled" in gap.detail
    assert gap.evidence.startswith(f"modeling_{model_type}.py:")


# granite: residual + sublayer * multiplier, also after an earlier scaled sublayer is summed in
@pytest.mark.parametrize("model_type", ["granite", "granitemoe", "minicpm3"])
def test_a_scaled_sublayer_stays_the_rule_s_case(model_type: str) -> None:
    features = analyze(model_type)
    assert features.block.residual_scale is True
    assert not _gap(features)


def test_unscaled_is_false() -> None:
    assert analyze("llama").block.residual_scale is False


def test_a_renamed_copy_reads_the_same(tmp_path) -> None:
    copy_path, _ = rename_model("beam", "zorblax", str(tmp_path))
    assert analyze(copy_path).block.residual_scale == "scaled_stream"


def test_beam_is_planned_no_further() -> None:
    """No plan is complete: the one with the fewest gaps names only what nothing realises
    (the analyzer's closest, deepseek_v3, would add its want of MLA for beam's GQA)."""
    plan = make_plan(load_target("beam"))
    assert not plan.complete
    assert [(g.feature, g.value) for g in plan.gaps] == [("block.residual_scale", "scaled_stream")]
