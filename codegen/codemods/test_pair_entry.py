"""Before/after cases for `pair_entry`: `OrderedDict([...])` lists of tuples."""

from codegen.codemods.testing import assert_adds, assert_refuses


def test_one_line_pairs_sorted_with_header_and_trailing_comments():
    assert_adds(
        """
        MODEL_MAPPING_NAMES = OrderedDict(
            [
                # Base model mapping
                ("llama", "LlamaModel"),
                ("qwen3", "Qwen3Model"),
                ("qwen3_moe", "Qwen3MoeModel"),  # MoE
                ("zamba", "ZambaModel"),
            ]
        )
        """,
        "MODEL_MAPPING_NAMES",
        "qwen3_next",
        ["Qwen3NextModel"],
        after="""
        MODEL_MAPPING_NAMES = OrderedDict(
            [
                # Base model mapping
                ("llama", "LlamaModel"),
                ("qwen3", "Qwen3Model"),
                ("qwen3_moe", "Qwen3MoeModel"),  # MoE
                ("qwen3_next", "Qwen3NextModel"),
                ("zamba", "ZambaModel"),
            ]
        )
        """,
    )


def test_multi_line_tuples_with_nested_pair_and_optional_third_element():
    assert_adds(
        """
        MODEL_ARCH_MAPPING = OrderedDict(
            [
                (
                    "DeepseekV3ForCausalLM",
                    ("pkg.models.deepseek_v3.model", "DeepseekV3ForCausalLM"),
                ),
                (
                    "LlamaBidirectionalModel",
                    ("pkg.models.llama_bidirectional.model", "LlamaBidirectionalModel", {"embed"}),
                ),
                (
                    "Qwen3ForCausalLM",
                    ("pkg.models.qwen3.model", "Qwen3ForCausalLM"),
                ),
            ]
        )
        """,
        "MODEL_ARCH_MAPPING",
        "MistralForCausalLM",
        ["pkg.models.mistral.model", "MistralForCausalLM"],
        after="""
        MODEL_ARCH_MAPPING = OrderedDict(
            [
                (
                    "DeepseekV3ForCausalLM",
                    ("pkg.models.deepseek_v3.model", "DeepseekV3ForCausalLM"),
                ),
                (
                    "LlamaBidirectionalModel",
                    ("pkg.models.llama_bidirectional.model", "LlamaBidirectionalModel", {"embed"}),
                ),
                ("MistralForCausalLM", ("pkg.models.mistral.model", "MistralForCausalLM")),
                (
                    "Qwen3ForCausalLM",
                    ("pkg.models.qwen3.model", "Qwen3ForCausalLM"),
                ),
            ]
        )
        """,
    )


def test_flat_three_element_tuples_copy_a_three_element_neighbour():
    assert_adds(
        """
        TABLE = OrderedDict([
            ("llama", "LlamaConfig", "llama"),
            ("qwen2", "Qwen2Config", "qwen2"),
        ])
        """,
        "TABLE",
        "qwen3",
        ["Qwen3Config", "qwen3"],
        after="""
        TABLE = OrderedDict([
            ("llama", "LlamaConfig", "llama"),
            ("qwen2", "Qwen2Config", "qwen2"),
            ("qwen3", "Qwen3Config", "qwen3"),
        ])
        """,
    )


def test_plain_list_of_pairs_and_empty_ordered_dict():
    assert_adds(
        'PAIRS = [("b", "B"), ("a", "A")]\n',
        "PAIRS",
        "c",
        ["C"],
        after='PAIRS = [("b", "B"), ("a", "A"), ("c", "C")]\n',
    )
    assert_adds(
        "EMPTY = OrderedDict([])\n",
        "EMPTY",
        "llama",
        ["LlamaModel"],
        after='EMPTY = OrderedDict([("llama", "LlamaModel")])\n',
    )


def test_conflicting_pair_is_refused():
    assert_refuses(
        'M = OrderedDict([("llama", "LlamaModel")])\n',
        "M",
        "llama",
        ["OtherModel"],
        match=r"duplicate key 'llama'.*'LlamaModel'",
    )
