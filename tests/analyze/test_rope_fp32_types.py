"""Layer types whose RoPE tables the backbone computes from fp32 inputs (dots3:
`self.rotary_emb(x.float() if layer_type == "indexed_attention" else x, ...)`): those
layers' q/k turn in fp32, the others' in the model's dtype. Rotating every layer in bf16
flipped an MoE router's near-tie in bf16 (layers.3.moe.gate)."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


def test_dots3_reads_its_fp32_layer_type(tmp_path):
    modeling, _ = rename_model("dots3_note", "wombat", str(tmp_path))
    for source in ("dots3_note_text", modeling):
        features = analyze(source)
        assert features.rope.fp32_types == ("indexed_attention",)
        assert "tables from fp32 inputs" in features.evidence["rope.fp32_types"]


def test_one_table_dtype_elsewhere():
    for model_type in ("deepseek_v3", "deepseek_v32", "gemma3_text", "qwen3"):
        assert analyze(model_type).rope.fp32_types == ()
