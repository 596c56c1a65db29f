"""Inkling-2's full-attention layers read against its sliding ones: a second attention
forward that is the first with its queries and relative states times a log-of-the-position
scale is a fact (`attention.layer_logn`); one that differs otherwise is named, with what
differs (transformers' own: key/value inputs of its own, input-dependent convolutions)."""

from __future__ import annotations

import re

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze
from tests.scaffold.inkling2_full_fixture import derive_full

pytest.importorskip("transformers.models.inkling2")

FOUND = {
    "layers": "full",
    "alpha": "hf_config.log_scaling_alpha",
    "floor": "hf_config.log_scaling_n_floor",
    "offset": 1,
    "scaled": ("q", "rel"),
}


def _named(features) -> dict[str, str]:
    return {u.feature: u.detail for u in features.unsupported}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return derive_full(tmp_path_factory.mktemp("hub"), "wombat")


def test_the_full_layers_scale_their_queries_and_relative_states_by_the_log_position(folder):
    features = analyze(str(folder))
    assert features.attention.layer_logn == FOUND
    assert "attention.layer_forwards" not in _named(features)
    path = folder / "modeling_wombat.py"
    line = int(features.evidence["attention.layer_logn"].split(":")[1].split()[0])
    assert "query_states.float() * tau" in path.read_text().splitlines()[line - 1]


@pytest.mark.parametrize(
    ("pattern", "replacement"),
    [
        # a log of another form (no clamp at 1): not the scale the rule builds
        (r"\)\.clamp\(min=1\.0\)\n", ")\n"),
        # the keys times the scale too
        (
            r"(class \w+FullAttention.*?        key_states = )(key_states\.view\(hidden_shape\))",
            r"\1(\2.float() * tau).to(query_states.dtype)",
        ),
    ],
)
def test_a_second_forward_that_differs_otherwise_is_named(tmp_path, pattern, replacement):
    copy = derive_full(tmp_path, "wombat")
    path = copy / "modeling_wombat.py"
    source, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.DOTALL)
    assert count
    path.write_text(source)
    features = analyze(str(copy))
    assert features.attention.layer_logn is None
    assert "FullAttention on layers 5" in _named(features)["attention.layer_forwards"]


DYNAMIC = {
    "convs": (("k_sconv", "k_proj"), ("v_sconv", "v_proj")),
    "static": "static_weight",
    "proj": "weight_proj",
    "layout": "kernel_channels",
    "kernel": 4,
    "kernel_field": "conv_kernel_size",
    "groups": 8,
    "divisor": "math.sqrt(2 * kernel + 1)",
    "fp32": True,
}


def test_transformers_own_full_layers_are_read(tmp_path):
    """Nothing is named any more: the scale, the inputs of its own (the layer computes them
    with its block attention residual's three queries, each through a norm of its own) and
    the input-dependent convolutions on the keys and values are facts."""
    features = analyze(rename_model("inkling2_text", "wombat", str(tmp_path))[0])
    assert features.attention.layer_logn == FOUND
    assert features.attention.layer_inputs is not None
    assert features.attention.layer_kv_convs == DYNAMIC
    assert "attention.layer_forwards" not in _named(features)
    where = features.evidence["attention.layer_kv_convs"]
    line = int(where.split(":")[1].split()[0])
    source = (tmp_path / "wombat" / "modeling_wombat.py").read_text().splitlines()
    assert "self.k_sconv = " in source[line - 1] and "DynamicShortConvolution(" in source[line - 1]


@pytest.mark.parametrize(
    ("pattern", "replacement"),
    [
        # the sum divided by a constant, not an expression over the kernel
        (r"/ math\.sqrt\(2 \* self\.conv_kernel_size \+ 1\)", "/ 3.0"),
        # the key filter's taps projected from the queries' input
        (
            r"(self\.k_proj\(key_hidden_states\)), key_hidden_states,",
            r"\1, hidden_states,",
        ),
    ],
)
def test_input_dependent_convolutions_of_another_form_are_named(tmp_path, pattern, replacement):
    copy = derive_full(tmp_path, "wombat", dynamic_convs=True)
    path = copy / "modeling_wombat.py"
    source, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.DOTALL)
    assert count
    path.write_text(source)
    features = analyze(str(copy))
    assert features.attention.layer_kv_convs is None
    named = _named(features)["attention.layer_forwards"]
    assert re.search(r"k_sconv: \w+DynamicShortConvolution in place of", named)


# the filters' third argument, their groups (one set of taps per group of channels)
GROUPS = (
    r"(DynamicShortConvolution\(\n\s*self\.num_key_value_heads \* self\.head_dim,\n"
    r"\s*config\.hidden_size,\n\s*)self\.num_key_value_heads,"
)


def test_input_dependent_convolutions_grouped_otherwise_than_by_kv_heads_are_named(tmp_path):
    """A package builds one set of taps per key/value head; filters whose groups are counted
    by anything else (here on both filters, so they stay alike) are no fact, named."""
    copy = derive_full(tmp_path, "wombat", dynamic_convs=True)
    path = copy / "modeling_wombat.py"
    # two kv heads a group: the channels still divide, the taps are half as many sets
    source, count = re.subn(GROUPS, r"\g<1>self.num_key_value_heads // 2,", path.read_text())
    assert count == 2
    path.write_text(source)
    features = analyze(str(copy))
    assert features.attention.layer_kv_convs is None
    named = _named(features)["attention.layer_forwards"]
    assert re.search(r"k_sconv: \w+DynamicShortConvolution in place of", named)


INPUTS = {
    "norms": {"q": "q_input_layernorm", "k": "k_input_layernorm", "v": "v_input_layernorm"},
    "reads": {"k": ("k_proj",), "v": ("v_proj",)},
}


def test_key_and_value_inputs_of_their_own_through_norms_of_their_own_are_read(tmp_path):
    copy = derive_full(tmp_path, "wombat", own_inputs=True)
    features = analyze(str(copy))
    assert features.attention.layer_logn == FOUND
    assert features.attention.layer_inputs == INPUTS
    assert "attention.layer_forwards" not in _named(features)
    line = int(features.evidence["attention.layer_inputs"].split(":")[1].split()[0])
    source = (copy / "modeling_wombat.py").read_text().splitlines()
    assert "self.self_attn(" in source[line - 1]


@pytest.mark.parametrize(
    ("pattern", "replacement", "named"),
    [
        # the keys through the queries' norm: one norm for two inputs
        (
            r"self\.k_input_layernorm\(hidden_states\)",
            "self.q_input_layernorm(hidden_states)",
            "through one norm",
        ),
        # the values' input read by the gate too
        (
            r"(class \w+FullAttention.*?)gate = self\.gate_proj\(hidden_states\)",
            r"\1gate = self.gate_proj(value_hidden_states)",
            "read by other than the key or value projections",
        ),
    ],
)
def test_inputs_of_their_own_read_otherwise_are_named(tmp_path, pattern, replacement, named):
    copy = derive_full(tmp_path, "wombat", own_inputs=True)
    path = copy / "modeling_wombat.py"
    source, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.DOTALL)
    assert count
    path.write_text(source)
    features = analyze(str(copy))
    assert features.attention.layer_inputs is None
    assert named in _named(features)["attention.layer_forwards"]
