"""A router width, the routed experts, that is an int or a per-layer list
(`moe.layer_experts`), read by the code's structure: a `self.<attr>` of the per-layer form
(`int_or_list`) that a `Linear` takes as its output width, its field and its `file:line`; the
same form read elsewhere (a top-k) is not this fact."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from codegen.analyze.analysis import analyze
from codegen.analyze.layer_experts import in_class
from codegen.analyze.source import ClassInfo

ROUTER = """
class Router(nn.Module):
    def __init__(self, config, layer_idx):
        self.width = config.e if isinstance(config.e, int) else config.e[layer_idx]
        self.k = config.k if isinstance(config.k, int) else config.k[layer_idx]
        self.proj = {build}
"""


def _class(code: str) -> ClassInfo:
    (node,) = cst.parse_module(code).body
    methods = {f.name.value: f for f in node.body.body if isinstance(f, cst.FunctionDef)}
    return ClassInfo(node.name.value, None, node, [], methods, {}, {}, [])


@pytest.mark.parametrize(
    "build",
    [
        "nn.Linear(config.hidden_size, self.width, bias=False)",
        "Linear(config.hidden_size, self.width)",
        "nn.Linear(in_features=config.hidden_size, out_features=self.width)",
    ],
)
def test_a_linear_as_wide_as_the_per_layer_count_names_its_field(build):
    field, node = in_class(_class(ROUTER.format(build=build)))
    assert field == "e" and cst.Module([]).code_for_node(node.targets[0].target) == "self.width"


@pytest.mark.parametrize(
    "build",
    [
        "nn.Linear(self.width, config.hidden_size)",  # the input width
        "nn.Linear(config.hidden_size, self.k * 2)",  # another expression
        "nn.Embedding(config.hidden_size, self.width)",  # no Linear
    ],
)
def test_another_use_is_no_fact(build):
    assert in_class(_class(ROUTER.format(build=build))) is None


def test_hunyuan_moe_router_is_as_wide_as_its_layers_count():
    features = analyze("hunyuan_v1_moe")
    assert features.moe.layer_experts == "num_experts"
    where = features.evidence["moe.layer_experts"]
    file, line = where.split(" ")[0].split(":")
    source = Path(features.source.modeling).read_text().splitlines()[int(line) - 1]
    assert file == "modeling_hunyuan_v1_moe.py" and "isinstance(config.num_experts, int)" in source


@pytest.mark.parametrize("model_type", ["qwen3_moe", "mixtral"])
def test_one_count_for_every_layer_is_no_fact(model_type):
    assert analyze(model_type).moe.layer_experts is None
