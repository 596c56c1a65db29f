"""state_dict.unused_keys: checkpoint weights of modules whose output the logits never read
(BigBird's causal LM keeps its backbone's pooler) are named, nothing else is."""

from __future__ import annotations

import pytest

from codegen.analyze.analysis import analyze


def test_the_pooler_of_a_causal_lm_is_unused():
    features = analyze("big_bird")
    assert features.state_dict.unused_keys == ("bert.pooler.weight", "bert.pooler.bias")
    assert "modeling_big_bird.py" in features.evidence["state_dict.unused_keys"]


# cwm loops over a slice of its stack, which the trace does not follow: nothing is unused
@pytest.mark.parametrize("model_type", ["bert", "roberta", "llama", "opt", "gpt2", "cwm"])
def test_every_weight_of_other_causal_lms_reaches_the_logits(model_type):
    assert analyze(model_type).state_dict.unused_keys == ()
