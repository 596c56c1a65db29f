"""Property tests on synthetic modeling files: one construct flips exactly one feature.

`analyze_helpers.synth_modeling` writes a small llama-like model whose flags each add one
construct: q/k RMSNorm on the head dim, bias on q/k/v, bias on o, bias on the MLP, a norm on
each sublayer output. Hypothesis draws a baseline; toggling any single flag must change the
feature it controls and nothing else in the checklist.
"""

from __future__ import annotations

import itertools
import tempfile

from analyze_helpers import write_synth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.analyze.analysis import analyze

FLAGS = ("q_norm", "qkv_bias", "o_bias", "mlp_bias", "post_norm")
CHECKLIST = (
    "category",
    "attention.kind",
    "attention.qk_norm",
    "attention.qkv_bias",
    "attention.o_bias",
    "attention.fused_qkv",
    "attention.sliding_window",
    "attention.sinks",
    "attention.softcap",
    "rope.type",
    "rope.partial_rotary",
    "rope.interleaved",
    "ffn.kind",
    "ffn.bias",
    "ffn.fused_gate_up",
    "norm.kind",
    "norm.placement",
    "embedding.tied",
    "embedding.scale",
    "head.logit_softcap",
    "head.logit_scale",
)
# flag -> (feature, value when off, value when on)
EFFECT = {
    "q_norm": ("attention.qk_norm", "none", "per_head"),
    "qkv_bias": ("attention.qkv_bias", False, True),
    "o_bias": ("attention.o_bias", False, True),
    "mlp_bias": ("ffn.bias", False, True),
    "post_norm": ("norm.placement", "pre", "sandwich"),
}

_CACHE: dict[tuple, dict] = {}


def checklist(flags: dict) -> dict:
    key = tuple(flags[f] for f in FLAGS)
    if key not in _CACHE:
        with tempfile.TemporaryDirectory() as folder:
            features = analyze(write_synth(folder, **flags))
        _CACHE[key] = {name: features.get(name) for name in CHECKLIST}
    return _CACHE[key]


flag_sets = st.fixed_dictionaries({f: st.booleans() for f in FLAGS})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=flag_sets, flip=st.sampled_from(FLAGS))
def test_toggling_one_construct_flips_exactly_its_feature(base: dict, flip: str) -> None:
    toggled = dict(base, **{flip: not base[flip]})
    before, after = checklist(base), checklist(toggled)
    changed = {k for k in CHECKLIST if before[k] != after[k]}
    feature, off, on = EFFECT[flip]
    assert changed == {feature}
    assert before[feature] == (on if base[flip] else off)
    assert after[feature] == (on if toggled[flip] else off)


def test_every_combination_reads_back_its_flags() -> None:
    for values in itertools.product([False, True], repeat=len(FLAGS)):
        if sum(values) not in (0, 1, len(FLAGS)):
            continue  # the property test covers the rest
        flags = dict(zip(FLAGS, values, strict=True))
        got = checklist(flags)
        for flag, (feature, off, on) in EFFECT.items():
            assert got[feature] == (on if flags[flag] else off), (flags, feature)
        assert got["category"] == "decoder"
        assert got["attention.kind"] == "gqa"
        assert got["ffn.kind"] == "swiglu"
