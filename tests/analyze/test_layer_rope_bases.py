"""A RoPE base read per layer from a config list (`rope.layer_bases`): the backbone builds a
table per entry (`{**config.rope_parameters, "rope_theta": entry}` in a loop over the list)
and hands each layer its own. The fact names the list and the base each entry replaces, with
the line that swaps it; models with one base have none. The renamed copy with a renamed
field: tests/scaffold/test_layer_rope_bases.py."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze

BASE = "rope_parameters.rope_theta"


@pytest.mark.parametrize("model_type", ["granite_swa", "granitemoe_swa"])
def test_installed_models_read_a_base_per_layer(model_type):
    features = analyze(model_type)
    assert features.rope.layer_bases == {"field": "layer_rope_theta", "base": BASE}
    evidence = features.evidence["rope.layer_bases"]
    assert (
        evidence.startswith(f"modeling_{model_type}.py:") and "config:layer_rope_theta" in evidence
    )


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "granite"])
def test_one_base_models_have_no_per_layer_bases(model_type):
    features = analyze(model_type)
    assert features.rope.layer_bases is None
    assert "rope.layer_bases" not in features.evidence
