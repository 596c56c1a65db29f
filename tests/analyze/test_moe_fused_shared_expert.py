"""minimax_m3's MoE block as the analysis reads it: a shared expert that is a fused gate/up
MLP with the clamped SwiGLU written out (`gate * sigmoid(alpha * gate)`, no named
activation) is an MLP, sized by the down projection's input, and the experts' output
multiplied by a config factor as a whole is routed scaling."""

from __future__ import annotations

from codegen.analyze.analysis import analyze
from codegen.analyze.reference import compared_value


def test_fused_clamped_shared_expert_and_scaled_experts_output():
    features = analyze("minimax_m3_vl_text")
    moe, ffn = features.moe, features.ffn
    assert moe.shared_experts == 1
    assert moe.shared_size == "config.shared_intermediate_size"
    assert moe.routed_scaling == 2.0
    assert (ffn.source, ffn.kind, ffn.fused_gate_up) == ("shared_expert", "clamped_swiglu", True)
    assert compared_value(features, "ffn.fused_gate_up") is True


def test_fused_experts_are_no_fused_ffn():
    """Experts stored as one gate_up tensor are a layout (moe.expert_layout), not a fused
    dense FFN: the comparison with a reference does not ask for a fused FeedForward."""
    features = analyze("qwen3_moe")
    assert features.ffn.source == "experts"
    assert compared_value(features, "ffn.fused_gate_up") is False
