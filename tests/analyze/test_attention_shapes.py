"""Attention shapes that differ by layer are findings, not the first layer's shapes.

Read from the first layer only, a package built every layer like layer 0 and failed on a
size mismatch. Sizes restated over the config are rules (`per_layer_config`, `latent`, or
`rule`: MiMo-V2-Flash's, in test_layer_size_rules.py); anything else is named and the plan
stops before writing.
"""

from __future__ import annotations

import json

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target

FINDINGS = {"attention.layer_shapes", "attention.sink_rule", "attention.v_head_dim"}


def test_uniform_layers_have_no_such_finding():
    for model_type in ("qwen2", "gpt_oss", "gemma2"):
        features = analyze(model_type)
        assert not FINDINGS & {u.feature for u in features.unsupported}
        assert features.attention.layer_shapes == "same"


def test_latent_attention_sized_per_layer_is_named(tmp_path):
    """dots3's sliding-window layers take other head counts and latent ranks
    (`per_layer_config`): the analysis says `latent` (the rule latent_layer_sizes) and its
    evidence names the projection, on a renamed copy too; latent attention the same on
    every layer has no such fact."""
    modeling, _ = rename_model("dots3_note", "wombat", str(tmp_path))
    for source in ("dots3_note_text", modeling):
        features = analyze(source)
        assert features.attention.layer_shapes == "latent"
        assert "attention.layer_shapes" not in {u.feature for u in features.unsupported}
        evidence = features.evidence["attention.layer_shapes"]
        assert "latent attention projections sized per layer: q_b_proj" in evidence
        assert "on layer 0" in evidence and "on layer 2" in evidence
    plan = make_plan(load_target("dots3_note_text"))
    assert "attention.layer_shapes" not in {gap.feature for gap in plan.gaps}
    assert "latent_layer_sizes" in {step.rule for step in plan.steps}
    for model_type in ("deepseek_v3", "deepseek_v32", "glm_moe_dsa"):
        features = analyze(model_type)
        assert features.attention.layer_shapes == "same"
        assert "attention.layer_shapes" not in {u.feature for u in features.unsupported}


def test_latent_layers_sized_beyond_their_overrides_are_other(tmp_path):
    """An override of anything but the latent sizes (here the experts' width) leaves the
    layers' sizes unexplained by a per-layer read of the latent sizes alone: `other`, a
    finding, and the plan stops."""
    overrides = {
        "num_attention_heads": 64,
        "num_key_value_heads": 64,
        "kv_lora_rank": 1024,
        "moe_intermediate_size": 512,
    }
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "dots3_note_text",
                "num_hidden_layers": 4,
                "per_layer_config": {"2": overrides, "3": overrides},
            }
        )
    )
    features = analyze("dots3_note_text", str(config))
    assert features.attention.layer_shapes == "other"
    found = {u.feature: u for u in features.unsupported}
    assert "q_b_proj" in found["attention.layer_shapes"].evidence
