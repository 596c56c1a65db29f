"""gemma3n's text decoder: the parts the rules realise are read as facts from its code (AltUp
and the Laurel branch among them), the one no rule realises yet (its per-layer inputs) stays
named unsupported."""

from __future__ import annotations

from codegen.analyze.analysis import analyze


def test_gemma3n_text_facts_and_what_stays_unsupported():
    features = analyze("gemma3n_text")
    assert features.ffn.layer_widths == "intermediate_size"
    assert features.ffn.activation_sparsity == {
        "field": "activation_sparsity_pattern",
        "per_layer": True,
    }
    assert features.attention.kv_sharing["field"] == "num_kv_shared_layers"
    # its __post_init__ checks isinstance(intermediate_size, Sequence) before it derives
    # layer_types: the analysis reads past it (per-type RoPE, the value norm)
    assert features.rope.per_layer_type is True
    assert features.attention.v_norm == "per_head"
    unsupported = {u.feature: u.detail for u in features.unsupported}
    assert set(unsupported) == {"block.layer_modules", "block.layer_input"}
    for part in ("per_layer_input_gate", "per_layer_projection"):
        assert part in unsupported["block.layer_modules"]
    assert "altup" not in unsupported["block.layer_modules"]
    # the Laurel branch is read whole (its / sqrt(2) no residual scale), so not named
    assert "laurel" not in unsupported["block.layer_modules"]
    assert features.block.low_rank_branch["module"] == "laurel"
    assert features.block.residual_scale is False


def test_gemma3n_text_altup_is_read_from_its_module_and_backbone():
    altup = analyze("gemma3n_text").block.altup
    assert altup == {
        "module": "altup",
        "streams": "altup_num_inputs",
        "active": "altup_active_idx",
        "clip": "altup_coef_clip",
        "params": {
            "output_scale": "correct_output_scale",
            "correction": "correction_coefs",
            "prediction": "prediction_coefs",
            "router": "modality_router",
            "router_norm": "router_norm",
        },
        "embed": "model.altup_projections",
        "unembed": "model.altup_unembed_projections",
    }
