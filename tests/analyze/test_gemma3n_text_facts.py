"""gemma3n's text decoder: every part is read as a fact from its code (AltUp, the Laurel
branch and the per-layer inputs into AltUp's streams among them), so none is named
unsupported."""

from __future__ import annotations

from codegen.analyze.analysis import analyze


def test_gemma3n_text_facts_leave_nothing_unsupported():
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
    assert not unsupported, unsupported
    # the Laurel branch is read whole (its / sqrt(2) no residual scale)
    assert features.block.low_rank_branch["module"] == "laurel"
    assert features.block.residual_scale is False


def test_gemma3n_text_per_layer_inputs_go_into_the_streams():
    """The per-layer addition goes into AltUp's corrected streams after the first, the gate
    reading the active stream scaled under `altup_correct_scale`; HF's scales are buffers."""
    found = analyze("gemma3n_text").block.per_layer_input
    assert found == {
        "input": "per_layer_input",
        "into": "streams",
        "correct_scale": "altup_correct_scale",
        "gate": "per_layer_input_gate",
        "up": "per_layer_projection",
        "norm": "post_per_layer_input_norm",
        "width": "hidden_size_per_layer_input",
        "vocab": "vocab_size_per_layer_input",
        "table": "model.embed_tokens_per_layer",
        "projection": "model.per_layer_model_projection",
        "mix_norm": "model.per_layer_projection_norm",
        "table_scale": "sqrt_width_dtype",
        "projection_scale": "rsqrt_dim_dtype",
        "mix_scale": "2.0 ** -0.5",
        "mix_scale_dtype": True,
        "outside_rows_read_zero": True,  # ids past the table read its row 0
    }


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
