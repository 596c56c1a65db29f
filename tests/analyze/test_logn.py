"""`attention.logn`: queries times 1 + beta * log(1 + floor((pos + offset) / period)), read
from the data flow with beta and period named by the config reads of the forward; a renamed
copy (renamed helper and rope key) reads the same."""

from __future__ import annotations

from pathlib import Path

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


def test_ministral3():
    features = analyze("ministral3")
    assert features.attention.logn == {
        "beta": 'hf_config.rope_parameters["llama_4_scaling_beta"]',
        "period": 'hf_config.rope_parameters["original_max_position_embeddings"]',
        "offset": 0.0,
    }
    assert features.attention.scale == "default"  # beta is not a softmax scale
    assert not any(u.feature == "attention.logn_scale" for u in features.unsupported)
    assert analyze("mistral").attention.logn is None


def test_renamed_copy(tmp_path):
    modeling, _ = rename_model("ministral3", "zorblax", str(tmp_path))
    edits = {"get_llama_4_attn_scale": "position_gain", '"llama_4_scaling_beta"': '"gain"'}
    for path in Path(modeling).parent.glob("*.py"):  # modeling and configuration
        text = path.read_text(encoding="utf-8")
        for old, new in edits.items():
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
    assert "position_gain" in Path(modeling).read_text(encoding="utf-8")
    logn = analyze(modeling).attention.logn
    assert logn is not None and logn["beta"] == 'hf_config.rope_parameters["gain"]'
