"""block.attention_residuals: inkling2's block attention residuals read from structure. The
depth attentions (a learned query attending over the stacked block states, nothing
projected) are no token attention: the decoder's attention is its own self-attention, the
layer norms sit before both sublayers, and the residual is named unsupported in one line
with its modules, query counts, the backbone's module before the final norm and the config
field that starts a block; inkling's plain residual layer has none."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze

pytest.importorskip("transformers.models.inkling2")


def test_inkling2_block_attention_residuals_are_read():
    features = analyze("inkling2_text")
    fact = features.block.attention_residuals
    layers = features.block.num_layers
    assert fact == {
        "layer": {
            "attention_input": {"queries": [1, 3], "layers": list(range(1, layers))},
            "mlp_input": {"queries": [1], "layers": list(range(layers))},
        },
        "final": "final_input",
        "boundary": {"field": "n_layers_per_attn_res_block", "flag": "is_block_boundary"},
    }
    site = features.evidence["block.attention_residuals"]
    assert site.startswith("modeling_inkling2.py:")
    # the depth attention is not read as the decoder's attention (its site, its norm)
    assert features.evidence["attention.kind"] != site
    assert features.norm.placement == "pre"
    found = [f for f in features.unsupported if f.feature == "block.attention_residuals"]
    assert len(found) == 1 and "n_layers_per_attn_res_block" in found[0].detail
    assert not [f for f in features.unsupported if f.feature == "block.layer_modules"]


def test_a_plain_residual_has_none():
    pytest.importorskip("transformers.models.inkling")
    assert analyze("inkling_text").block.attention_residuals is None
