"""The attention output gate is read from the data flow: its kind, its projection and
per-head bias by attribute name, whatever the model and attributes are called."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize(
    ("model_type", "kind", "projection", "head_bias"),
    [
        ("afmoe", "sigmoid", "gate_proj", None),
        ("hrm_text", "sigmoid", "gate_proj", None),
        ("beam", "sigmoid", "gate_proj", "gate_bias"),
        ("qwen3_next", "sigmoid_fused_q", "q_proj", None),  # the gate is chunked out of q_proj
        ("llama", "none", None, None),
    ],
)
def test_output_gate_of_installed_models(model_type, kind, projection, head_bias):
    attention = analyze(model_type).attention
    assert (attention.output_gate, attention.gate_proj) == (kind, projection)
    assert attention.gate_head_bias == head_bias
    assert attention.gate_bias is False


def test_output_gate_evidence_cites_the_gating_line():
    features = analyze("afmoe")
    where = features.evidence["attention.output_gate"]
    line = int(where.rsplit(":", 1)[1])
    source = open(features.source.modeling, encoding="utf-8").read().splitlines()
    assert "sigmoid" in source[line - 1]
    assert features.evidence["attention.gate_proj"].startswith("modeling_afmoe.py:")


def test_renamed_copy_with_renamed_gate_attributes(tmp_path):
    modeling, _ = rename_model("beam", "zorblax", str(tmp_path))
    text = open(modeling, encoding="utf-8").read()
    # only the attention's gate attributes are renamed (the MLP keeps its gate_proj)
    edits = {
        "self.gate_proj = nn.Linear(config.hidden_size, config.num_attention_heads": (
            "self.out_gate = nn.Linear(config.hidden_size, config.num_attention_heads"
        ),
        "gate = self.gate_proj(hidden_states).view_as(attn_output) + self.gate_bias": (
            "gate = self.out_gate(hidden_states).view_as(attn_output) + self.head_shift"
        ),
        "self.gate_bias = nn.Parameter": "self.head_shift = nn.Parameter",
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    open(modeling, "w", encoding="utf-8").write(text)
    attention = analyze(modeling).attention
    assert attention.output_gate == "sigmoid"
    assert (attention.gate_proj, attention.gate_head_bias) == ("out_gate", "head_shift")


def test_softplus_gate_with_one_gate_per_head():
    """laguna: `softplus(g_proj(x).float())`, g_proj with one output per head, multiplied
    onto the output viewed per head; the other gates have one output per feature."""
    attention = analyze("laguna").attention
    assert (attention.output_gate, attention.gate_proj) == ("softplus", "g_proj")
    assert attention.gate_per_head is True
    assert analyze("afmoe").attention.gate_per_head is False


def test_gate_cut_out_of_the_query_projection_names_its_rows(tmp_path):
    """axk2: `q_gate_proj(cat([q_norm(a), a])).view(b, s, -1, qk + v).split([qk, v])`, the
    gate's sigmoid over `.float()`; qwen3_next: `chunk(q_proj(x).view(..., 2 * d), 2)`. Read
    from the data flow, on a copy whose projection and locals are renamed too."""
    attention = analyze("axk2").attention
    assert attention.output_gate == "sigmoid_fused_q"
    assert (attention.gate_proj, attention.gate_layout) == ("q_gate_proj", "per_head_q_gate")
    assert attention.gate_fp32 is True and attention.q_latent_raw is True
    assert attention.scale == "default"  # the query head excludes the gate's rows
    qwen3_next = analyze("qwen3_next").attention
    assert (qwen3_next.gate_layout, qwen3_next.gate_fp32) == ("per_head_q_gate", False)
    assert qwen3_next.q_latent_raw is False
    modeling, _ = rename_model("axk2", "quokka", str(tmp_path))
    text = open(modeling, encoding="utf-8").read()
    edits = {
        "q_gate_proj": "fused_up",
        "query_states, gate_states = torch.split(query_gate_states, [self.qk_head_dim, self.v": (
            "gate_states, query_states = torch.split(query_gate_states, [self.v_head_dim, self.qk"
        ),
        "torch.sigmoid(gate_states.float())": "torch.sigmoid(gate_states)",
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    open(modeling, "w", encoding="utf-8").write(text)
    renamed = analyze(modeling).attention
    assert (renamed.gate_proj, renamed.gate_layout) == ("fused_up", "per_head_gate_q")
    assert renamed.gate_fp32 is False and renamed.q_latent_raw is True
