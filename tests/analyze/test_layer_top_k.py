"""A router top-k that is an int or a per-layer list (`moe.layer_top_k`), read by the code's
structure: the form `F if isinstance(F, int) else F[layer_idx]` either way round, its field
and its `file:line`; other type tests (a constant index, a size pair) are not this form."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from codegen.analyze import int_or_list
from codegen.analyze.analysis import analyze
from codegen.analyze.layer_top_k import per_layer_field

PARAMS = ["config", "layer_idx"]


@pytest.mark.parametrize(
    "code",
    [
        "config.k if isinstance(config.k, int) else config.k[layer_idx]",
        "config.k[layer_idx] if isinstance(config.k, list) else config.k",
        "config.k[layer_idx] if isinstance(config.k, (list, tuple)) else config.k",
        "config.k[layer_idx] if isinstance(config.k, list | tuple) else config.k",
    ],
)
def test_the_form_either_way_round_names_its_field(code):
    assert per_layer_field(cst.parse_expression(code), PARAMS) == "k"


@pytest.mark.parametrize(
    "code",
    [
        "config.k[0] if isinstance(config.k, list) else config.k",  # a constant index
        "(config.k, config.k) if isinstance(config.k, int) else config.k",  # a size pair
        "config.k if isinstance(config.k, int) else config.j[layer_idx]",  # another field
        "config.k if isinstance(config.k, float) else config.k[layer_idx]",  # not int/list
        "config.k if isinstance(config.k, int) else config.k[other]",  # not a parameter
        "config.k if config.k else config.k[layer_idx]",  # no type test
    ],
)
def test_other_forms_are_not_read(code):
    assert per_layer_field(cst.parse_expression(code), PARAMS) is None


def test_the_layer_indexed_form_is_the_switch_scans_too():
    form = cst.parse_expression("c.eos[0] if isinstance(c.eos, list) else c.eos")
    assert int_or_list.layer_indexed(form) is None
    form = cst.parse_expression("c.k if isinstance(c.k, int) else c.k[i]")
    tested, indexed = int_or_list.layer_indexed(form)
    assert cst.Module([]).code_for_node(tested) == "c.k"
    assert cst.Module([]).code_for_node(indexed) == "c.k[i]"


def test_hunyuan_moe_router_reads_its_top_k_per_layer():
    features = analyze("hunyuan_v1_moe")
    assert features.moe.layer_top_k == "moe_topk"
    where = features.evidence["moe.layer_top_k"]
    file, line = where.split(" ")[0].split(":")
    source = Path(features.source.modeling).read_text().splitlines()[int(line) - 1]
    assert file == "modeling_hunyuan_v1_moe.py" and "isinstance(config.moe_topk, int)" in source


@pytest.mark.parametrize("model_type", ["qwen3_moe", "mixtral"])
def test_one_top_k_for_every_layer_is_no_fact(model_type):
    assert analyze(model_type).moe.layer_top_k is None
