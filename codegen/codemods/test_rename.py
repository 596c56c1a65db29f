"""Tests for `rename`: swapping a model's name in copied code."""

from codegen.codemods.rename import swap
from codegen.targets.variables import camel


def test_swap_whole_parts_in_snake_and_camel_forms():
    assert camel("qwen3_moe") == "Qwen3Moe"
    assert swap("from pkg.qwen2 import spec as qwen2_spec", "qwen2", "llama") == (
        "from pkg.llama import spec as llama_spec"
    )
    assert (
        swap("Qwen2Model(Qwen2Config)", "qwen2", "deepseek_v3")
        == "DeepseekV3Model(DeepseekV3Config)"
    )
    assert swap("qwen20 and Qwen20Model", "qwen2", "llama") == "qwen20 and Qwen20Model"
