"""block.residual_scale tells a scaled sublayer output (granite's residual_multiplier) from a
depth-scaled residual sum (beam: both operands times numbers of the layer index) from a
stream weighted by learned per-channel vectors (doge: `w * x + sublayer(x)`), all three
realised by the residual_scale rule; any other scaled residual stream is one unsupported
line, not a transform failing mid-scaffold."""

from __future__ import annotations

import math

import pytest
from analyze_helpers import rename_model

from codegen.analyze import depth_scale, stream_weights
from codegen.analyze.analysis import analyze
from codegen.analyze.dataflow import Term
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target


def _gap(features):
    return [u for u in features.unsupported if u.feature == "block.residual_scale"]


def test_a_learned_stream_weight_names_its_parameters() -> None:
    features = analyze("doge")  # learned per-channel weights times the residual
    assert features.block.residual_scale == "learned_stream"
    assert features.block.stream_weights == ("input_residual", "post_attention_residual")
    assert not _gap(features)
    assert features.evidence["block.residual_scale"].startswith("modeling_doge.py:")


def test_a_renamed_learned_stream_reads_the_same(tmp_path) -> None:
    copy_path, _ = rename_model("doge", "zorblax", str(tmp_path))
    block = analyze(copy_path).block
    assert block.residual_scale == "learned_stream"
    assert block.stream_weights == ("input_residual", "post_attention_residual")


def test_a_stream_times_a_number_is_not_a_learned_weight() -> None:
    """A scaled stream whose factor is no parameter (beam's numbers) is not this form."""
    assert stream_weights.read(None, _layer(0)) is None


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


ZAYA_AFFINE = {
    label: {
        "module": module,
        "out_bias": "hidden_states_bias",
        "out_scale": "hidden_states_scale",
        "stream_bias": "residual_bias",
        "stream_scale": "residual_scale",
    }
    for label, module in (
        ("attention", "post_attention_residual_scale"),
        ("mlp", "post_mlp_residual_scale"),
    )
}


@pytest.mark.parametrize("renamed", [False, True])
def test_affine_residual_modules_name_their_parameters(tmp_path, renamed) -> None:
    """zaya: each add is `(out + b) * s + (x + c) * t`, the parameters of a module of the
    layer; both modules share one record, told apart by the order of their calls."""
    pytest.importorskip("transformers.models.zaya")
    target = rename_model("zaya", "zorblax", str(tmp_path))[0] if renamed else "zaya"
    features = analyze(target)
    assert features.block.residual_scale == "affine"
    assert features.block.residual_affine == ZAYA_AFFINE
    assert not _gap(features)
    assert "block.layer_modules" not in [u.feature for u in features.unsupported]
