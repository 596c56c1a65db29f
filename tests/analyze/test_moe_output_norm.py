"""`moe.output_norm`: a norm module the MoE block's output goes through (axk1's
`post_mlp_layernorm`), by its attribute on the block, on renamed copies too; and a config
override that ends in `super().convert_rope_params_to_dict(**kwargs)` (minimax_m2) still
yields rope_parameters, so its rotary dim is evaluated."""

from __future__ import annotations

import pytest
from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze


@pytest.mark.parametrize(
    ("model_type", "norm"),
    [("axk1", "post_mlp_layernorm"), ("deepseek_v3", None), ("qwen3_moe", None)],
)
def test_moe_output_norm(model_type, norm):
    features = analyze(model_type)
    assert features.moe.output_norm == norm
    if norm:
        where = features.evidence["moe.output_norm"]
        line = int(where.rsplit(":", 1)[1])
        source = open(features.source.modeling, encoding="utf-8").read().splitlines()
        assert f"self.{norm}(" in source[line - 1]


def test_renamed_copy_with_a_renamed_norm(tmp_path):
    modeling, _ = rename_model("axk1", "zorblax", str(tmp_path))
    text = open(modeling, encoding="utf-8").read()
    assert text.count("self.post_mlp_layernorm") == 2
    open(modeling, "w", encoding="utf-8").write(
        text.replace("self.post_mlp_layernorm", "self.out_norm")
    )
    assert analyze(modeling).moe.output_norm == "out_norm"


def test_rope_parameters_through_a_super_call_of_the_base_config():
    features = analyze("minimax_m2")
    assert features.rope.partial_rotary == 1
    assert features.rope.theta == 5e6
