"""block.residual_scale tells a scaled sublayer output (granite's residual_multiplier) from a
depth-scaled residual sum (beam: both operands times numbers of the layer index, which the
residual_scale rule realises too) from any other scaled residual stream (doge's learned
per-channel weights), which no rule realises: that one is one unsupported line, not a
transform failing mid-scaffold."""

from __future__ import annotations

import math

import pytest
from analyze_helpers import rename_model

from codegen.analyze import depth_scale
from codegen.analyze.analysis import analyze
from codegen.analyze.dataflow import Term
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def _gap(features):
    return [u for u in features.unsupported if u.feature == "block.residual_scale"]


def test_a_learned_stream_scale_is_one_unsupported_line() -> None:
    features = analyze("doge")  # learned per-channel weights times the residual
    assert features.block.residual_scale == "scaled_stream"
    (gap,) = _gap(features)
    assert "residual stream itself scaled" in gap.detail
    assert gap.evidence.startswith("modeling_doge.py:")


def test_a_depth_scaled_sum_is_read_from_the_traced_factors() -> None:
    """beam: h / sqrt(k) + residual * sqrt((k - 1) / k), k from the layer index."""
    features = analyze("beam")
    assert features.block.residual_scale == "depth_scaled"
    assert not _gap(features)
    assert features.evidence["block.residual_scale"].startswith("modeling_beam.py:")


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
    assert analyze(copy_path).block.residual_scale == "depth_scaled"


def _sum(out: float, stream: float) -> dict:
    call = Term("call")
    add = Term("add", (Term("mul", (call, out)), Term("mul", (Term("input"), stream))))
    return {"call": call, "add": add}


def _layer(i: int, shift: float = 0.0) -> dict:
    k = 2 * i + 2
    return {
        "attention": _sum(1 / math.sqrt(k), math.sqrt((k - 1) / k) + shift),
        "mlp": _sum(1 / math.sqrt(k + 1), math.sqrt(k / (k + 1))),
    }


def test_the_form_holds_on_every_layer_checked() -> None:
    assert depth_scale.is_depth_scaled([_layer(0), _layer(1), _layer(2)])
    # one stream factor off in the third layer: another function of the depth
    assert not depth_scale.is_depth_scaled([_layer(0), _layer(1), _layer(2, shift=1e-3)])
    # the factors of layer 0 repeated: constants, not a function of the depth
    assert not depth_scale.is_depth_scaled([_layer(0), _layer(0)])


def test_beam_is_planned_to_the_end() -> None:
    plan = make_plan(load_target("beam"))
    assert plan.complete, plan.gaps
    assert {"residual_scale", "nope_layers", "logn_attention"} <= {s.rule for s in plan.steps}
