"""Before/after cases for `member`: sets, frozensets, tuples and lists."""

from codegen.codemods.testing import assert_adds, assert_refuses


def test_frozenset_sorted_one_line():
    assert_adds(
        'SUPPORTED = frozenset({"llama", "qwen2", "qwen3"})\n',
        "SUPPORTED",
        "mistral",
        after='SUPPORTED = frozenset({"llama", "mistral", "qwen2", "qwen3"})\n',
    )


def test_multi_line_set_with_trailing_comma():
    assert_adds(
        """
        TYPES = {
            "deepseek_v3",
            "llama",
        }
        """,
        "TYPES",
        "qwen2",
        after="""
        TYPES = {
            "deepseek_v3",
            "llama",
            "qwen2",
        }
        """,
    )


def test_tuple_of_classes_keeps_names_and_single_element_tuple():
    assert_adds(
        "ARCHS = (LlamaForCausalLM, Qwen2ForCausalLM)\n",
        "ARCHS",
        "Qwen3ForCausalLM",
        after="ARCHS = (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)\n",
    )
    assert_adds('ONLY = ("llama",)\n', "ONLY", "qwen2", after='ONLY = ("llama", "qwen2")\n')


def test_list_in_a_function_and_tuple_factory():
    assert_adds(
        """
        def supported():
            names = list(["b", "a"])
            return names
        """,
        "names",
        "c",
        after="""
        def supported():
            names = list(["b", "a", "c"])
            return names
        """,
    )


def test_members_take_no_values():
    assert_refuses('S = {"a"}\n', "S", "b", ["extra"], match="takes a KEY and no VALUE")
