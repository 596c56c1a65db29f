"""Per-layer inputs (gemma4's per-layer embeddings) are read whole from the data flow: the
second table, the projection of the embeddings and its norm, the scales, and each layer's
gate, up projection and norm. A renamed copy whose modules are renamed too reads the same
structure under its own names; gemma3n's, added into AltUp's corrected streams, are read in
that form (its Laurel stays named); a plain decoder has none."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

EXPECTED = {
    "input": "per_layer_input",
    "width": "hidden_size_per_layer_input",
    "vocab": "vocab_size_per_layer_input",
    "table": "model.embed_tokens_per_layer",
    "projection": "model.per_layer_model_projection",
    "mix_norm": "model.per_layer_projection_norm",
    "table_scale": "sqrt_width_dtype",
    "projection_scale": "rsqrt_dim",
    "mix_scale": "2.0**-0.5",
    "mix_scale_dtype": False,
    "outside_rows_read_zero": False,
    "into": "output",
    "correct_scale": None,
    "gate": "per_layer_input_gate",
    "up": "per_layer_projection",
    "norm": "post_per_layer_input_norm",
}


def _layer_findings(features) -> dict[str, str]:
    return {u.feature: u.detail for u in features.unsupported if u.feature.startswith("block.")}


def test_gemma4_reads_the_per_layer_inputs_and_leaves_no_finding():
    features = analyze("gemma4_text")
    assert features.block.per_layer_input == EXPECTED
    assert features.evidence["block.per_layer_input"].startswith("modeling_gemma4.py:")
    assert "block.per_layer_input" in features.reference.delta
    assert _layer_findings(features) == {}


def test_renamed_copy_with_renamed_modules_reads_the_same_structure(tmp_path):
    path, _ = rename_model("gemma4_text", "zorblax", str(tmp_path))
    source = open(path, encoding="utf-8").read()
    renames = {
        "post_per_layer_input_norm": "side_norm",
        "per_layer_input_gate": "side_gate",
        "embed_tokens_per_layer": "row_table",
        "per_layer_model_projection": "row_mix",
        "per_layer_input_scale": "blend",
    }
    for old, new in renames.items():
        assert old in source
        source = source.replace(old, new)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(source)
    found = analyze(path).block.per_layer_input
    assert found == {
        **EXPECTED,
        "table": "model.row_table",
        "projection": "model.row_mix",
        "gate": "side_gate",
        "norm": "side_norm",
    }


def test_gemma3n_reads_them_into_the_streams():
    features = analyze("gemma3n_text")
    found = features.block.per_layer_input
    assert (found["into"], found["correct_scale"]) == ("streams", "altup_correct_scale")
    findings = _layer_findings(features)
    assert "block.layer_modules" not in findings  # AltUp, Laurel and the per-layer parts read
    assert "block.layer_input" not in findings


def test_plain_decoder_has_none():
    assert analyze("llama").block.per_layer_input is None
