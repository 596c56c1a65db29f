"""Inkling's learned relative position bias, read by structure from the term the attention
hands its kernel: the states projection, the table, its width and per-layer extent restated
over the config. A renamed copy reads the same; its short convolutions are named
unsupported (never silently dropped), and its layer types (named otherwise than
"sliding_attention") slide by a rule restated from the attention's `__init__`."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

SLIDING = 'hf_config.layer_types[i] == "hybrid_sliding"'
EXTENT = f"hf_config.sliding_window_size if ({SLIDING}) else hf_config.rel_extent"


def test_inkling_and_a_renamed_copy_read_the_bias(tmp_path):
    modeling, _ = rename_model("inkling_text", "wombat", str(tmp_path))
    for source in ("inkling_text", modeling):
        features = analyze(source)
        attention = features.attention
        assert attention.rel_bias == {
            "states": "r_proj",
            "table": "rel_logits_proj.proj",
            "width": "hf_config.d_rel",
            "extent": EXTENT,
            "kernel": "sdpa",  # InklingPreTrainedModel._supports_sdpa = True
        }
        evidence = features.evidence["attention.rel_bias"]
        assert "clamped backward distance" in evidence and "kernel sdpa" in evidence
        assert attention.window_rule == SLIDING
        unsupported = {u.feature: u.detail for u in features.unsupported}
        # its short convolutions are facts of their own (tests/analyze/test_residual_convs.py)
        assert attention.kv_convs is not None and features.block.output_convs is not None
        assert "attention.position_bias" not in unsupported


def test_models_without_a_bias_read_none():
    for model_type in ("qwen3", "gemma2"):
        attention = analyze(model_type).attention
        assert attention.rel_bias is None
        assert attention.window_rule is None
